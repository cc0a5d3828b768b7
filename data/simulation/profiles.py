"""The simulator's fixed inputs: the four site presets and the tissue relaxation ranges.

The presets are modelled on the four clients of FedMRI (C.-M. Feng et al., "Specificity-Preserving
Federated Learning for MR Image Reconstruction", IEEE TMI 2022): the same anatomy model imaged by
different scanners and protocols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GENERATOR_VERSION = 1  # bump whenever the generated images change: it reseeds them and invalidates caches

Contrast = Literal["t1", "t2"]
ProfileName = Literal["fastmri", "brats", "sms", "umr"]


@dataclass(frozen=True)
class Profile:
    """A site's protocol preset: how its scanner turns the same anatomy into its own images."""

    fov_mm: float  # square field of view
    slice_mm: float  # slice thickness: through-plane partial volume
    protocol: dict[str, tuple[float, float]]  # contrast -> (TR, TE) in ms
    skull_stripped: bool  # brain only, zero background (BraTS); otherwise skull and scalp are imaged
    lesions: bool  # default for ``SyntheticOptions.lesions``
    bias_std: float  # strength of the random smooth multiplicative bias field (std of its log)
    bias_radial: float  # coil profile: > 0 brighter periphery (phased array), < 0 brighter centre
    noise: float  # Rician noise std relative to the volume's 99th-percentile signal
    blur_px: float  # Gaussian blur of the image, pixels (softer reconstructions)
    gamma: float  # intensity curve applied to the magnitude image
    scale: float  # overall intensity units


# The four site presets, after the paper's clients: same anatomy model, different scanners and protocols.
PROFILES: dict[str, Profile] = {
    "fastmri": Profile(
        fov_mm=220,
        slice_mm=5.0,
        protocol={"t1": (500, 12), "t2": (4000, 100)},
        skull_stripped=False,
        lesions=False,
        bias_std=0.12,
        bias_radial=0.15,
        noise=0.02,
        blur_px=0.0,
        gamma=1.0,
        scale=1.0,
    ),
    "brats": Profile(
        fov_mm=240,
        slice_mm=1.0,
        protocol={"t1": (450, 11), "t2": (3200, 90)},
        skull_stripped=True,
        lesions=True,
        bias_std=0.05,
        bias_radial=0.0,
        noise=0.008,
        blur_px=0.8,
        gamma=1.15,
        scale=300.0,
    ),
    "sms": Profile(
        fov_mm=230,
        slice_mm=4.0,
        protocol={"t1": (600, 15), "t2": (5000, 120)},
        skull_stripped=False,
        lesions=False,
        bias_std=0.2,
        bias_radial=0.35,
        noise=0.03,
        blur_px=0.4,
        gamma=0.9,
        scale=2.5,
    ),
    "umr": Profile(
        fov_mm=220,
        slice_mm=3.0,
        protocol={"t1": (400, 10), "t2": (3500, 100)},
        skull_stripped=False,
        lesions=False,
        bias_std=0.18,
        bias_radial=-0.2,
        noise=0.04,
        blur_px=0.6,
        gamma=0.85,
        scale=0.6,
    ),
}

# Tissue (T1 ms, T2 ms, PD) ranges at 1.5-3 T; each subject draws its own values inside them.
TISSUES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "csf": ((3000, 4000), (1500, 2500), (0.97, 1.0)),
    "gm": ((1050, 1400), (85, 110), (0.78, 0.82)),
    "wm": ((700, 850), (70, 80), (0.68, 0.72)),
    "oedema": ((1400, 1600), (140, 160), (0.88, 0.92)),
    "necrosis": ((2800, 3200), (900, 1100), (0.98, 1.0)),
    "bone": ((400, 600), (15, 25), (0.03, 0.07)),
    "marrow": ((350, 450), (80, 110), (0.5, 0.65)),
    "fat": ((300, 400), (100, 140), (0.85, 0.95)),
    "skin": ((900, 1100), (40, 50), (0.65, 0.75)),
}

# Layers outside the brain, inside out, with (min, max) thickness in mm; the background follows.
HEAD_LAYERS: tuple[tuple[str, tuple[float, float]], ...] = (
    ("csf", (1.0, 3.0)),
    ("bone", (1.5, 2.5)),
    ("marrow", (1.5, 3.0)),
    ("bone", (1.0, 2.0)),
    ("fat", (2.0, 5.0)),
    ("skin", (1.5, 3.0)),
)
