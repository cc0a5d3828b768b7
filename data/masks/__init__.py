"""Undersampling masks for centred k-space: typed options per kind, 1D and 2D patterns, and masks from files.

Each kind is one module (``random_1d.py`` ... ``file.py``) declaring a pydantic options model next to its
pattern; ``base.py`` holds what they share, ``readers.py`` reads mask files, and ``registry.py`` names the
kinds. :data:`MaskOptions` is their union, discriminated by ``kind``, and is what a site's ``mask``
section of a config holds. ``build_mask(options)`` returns the mask function ``f(shape, seed) ->
np.ndarray``: a bool array of exactly ``shape`` (H, W), True where k-space is sampled, for k-space
centred with DC at (H // 2, W // 2). The same (shape, seed) always gives the same mask, so a caller that
passes a stable seed per (file, slice) gets fixed validation masks. Mask functions are small frozen
dataclasses: they compare, hash and pickle.

Every generated kind takes ``acceleration`` R >= 1 (1 = fully sampled, all True) and ``center_fraction``
(1D: the fraction of centre columns always kept, ``max(1, round(W * center_fraction))`` of them;
2D: the always-sampled centre ellipse with semi-axes ``center_fraction * H / 2`` and
``center_fraction * W / 2``, a disc on square grids). 1D kinds select columns (the last axis, phase
encoding) and repeat them over the rows. Every kind also takes ``redraw_train`` [True]: draw a new
training mask for every sample and epoch (False: one fixed mask per slice, as for validation), and
``fixed`` [False]: one mask per site, drawn from the run's seed, for every training sample and every
validation and test slice, as the FedMRI paper's clients each used one stored mask (True overrides
``redraw_train``). Without ``fixed`` validation and test masks are fixed per (volume, slice).

=============  ==========================================================================================
kind           parameters [defaults]: what it draws
=============  ==========================================================================================
random_1d      acceleration [4], center_fraction [0.08]: fastMRI's random columns (Bernoulli per column)
equispaced_1d  acceleration [4], center_fraction [0.08], exact_fraction [True]: fastMRI's equispaced
               columns from a random offset, spaced so the total is ~W/R (``exact_fraction: false``:
               fastMRI's original every R-th column, which samples more than W/R)
uniform_1d     acceleration [4], center_fraction [0.08]: deterministic evenly spaced columns, exactly
               round(W/R) in total
random_2d      acceleration [4], center_fraction [0.08], sigma [0.4]: Gaussian variable density,
               exactly round(H*W/R) points
radial_2d      acceleration [4], center_fraction [0.08], golden_angle [False]: straight spokes through DC
poisson_2d     acceleration [4], center_fraction [0.08], falloff [2.0]: variable-density Poisson disc
file           path [required], acceleration [None]: a ``.mat`` (key ``mask``) or ``.npy`` array
=============  ==========================================================================================

The fastMRI kinds follow the masks of the fastMRI dataset paper (Zbontar et al., "fastMRI: An Open
Dataset and Benchmarks for Accelerated MRI", 2018) and its reference code.
"""

from data.masks.base import MaskFunc, MaskOptionsBase, acceleration_of
from data.masks.equispaced_1d import Equispaced1D, Equispaced1DOptions
from data.masks.file import TOLERANCE, FileMask, FileMaskOptions
from data.masks.poisson_2d import CALIBRATION_SEED, Poisson2D, Poisson2DOptions
from data.masks.radial_2d import GOLDEN_ANGLE, Radial2D, Radial2DOptions
from data.masks.random_1d import Random1D, Random1DOptions
from data.masks.random_2d import Random2D, Random2DOptions
from data.masks.registry import MASKS, MaskOptions, build_mask, create, mask_kinds
from data.masks.uniform_1d import Uniform1D, Uniform1DOptions

__all__ = [
    "CALIBRATION_SEED",
    "GOLDEN_ANGLE",
    "MASKS",
    "TOLERANCE",
    "Equispaced1D",
    "Equispaced1DOptions",
    "FileMask",
    "FileMaskOptions",
    "MaskFunc",
    "MaskOptions",
    "MaskOptionsBase",
    "Poisson2D",
    "Poisson2DOptions",
    "Radial2D",
    "Radial2DOptions",
    "Random1D",
    "Random1DOptions",
    "Random2D",
    "Random2DOptions",
    "Uniform1D",
    "Uniform1DOptions",
    "acceleration_of",
    "build_mask",
    "create",
    "mask_kinds",
]
