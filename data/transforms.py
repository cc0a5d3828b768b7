"""One slice -> one training sample: (simulate) k-space, undersample, zero-fill, crop, normalise.

A source hands over either a ground-truth image, whose k-space is simulated by ``fft2c``, or measured
k-space (:class:`~data.sources.base.KspaceSlice`, single- or multi-coil). Both take the same path: the
mask is drawn for the k-space's (H, W), the masked k-space is inverse transformed, centre-cropped to the
target size and reduced to a magnitude (root sum of squares over coils), which is the zero-filled input.
The network sees that input normalised by its own mean and standard deviation (instance normalisation,
fastMRI's U-Net baseline and FedMRI); the target is normalised with the same statistics, which travel
with the sample so metrics can be computed in the original scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data.fourier import center_crop, fft2c, ifft2c, rss
from data.masks import MaskFunc
from data.sources.base import KspaceSlice, SliceData

EPS = 1e-11


@dataclass(frozen=True)
class UndersampledSlice:
    """The zero-filled reconstruction of one slice and what produced it."""

    zero_filled: torch.Tensor  # (h, w) float32 magnitude, cropped to the target
    target: torch.Tensor  # (h, w) float32 magnitude
    mask: torch.Tensor  # (H, W) bool, drawn for the k-space
    masked_kspace: torch.Tensor  # complex64, (H, W) single-coil or simulated, (C, H, W) multi-coil


def _magnitude(images: torch.Tensor) -> torch.Tensor:
    """(C, H, W) complex coil images -> (H, W) float32: the magnitude for one coil, else the RSS."""
    return (images[0].abs() if images.shape[0] == 1 else rss(images, 0)).float()


def undersample_kspace(
    kspace: torch.Tensor, mask: np.ndarray, crop: tuple[int, int], target: torch.Tensor | None = None
) -> UndersampledSlice:
    """Centred k-space (H, W) or (C, H, W) -> keep ``mask`` -> inverse FFT -> crop -> magnitude.

    ``target`` (h, w) is the reference image; when None it is the magnitude of the fully sampled k-space,
    cropped the same way.
    """
    single = kspace.dim() == 2
    if single:
        kspace = kspace.unsqueeze(0)
    if kspace.dim() != 3:
        raise ValueError(f"expected k-space (H, W) or (C, H, W), got shape {tuple(kspace.shape)}")
    if mask.shape != tuple(kspace.shape[-2:]):
        raise ValueError(f"mask shape {mask.shape} does not match k-space shape {tuple(kspace.shape[-2:])}")
    mask_t = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))
    masked = kspace * mask_t
    zero_filled = _magnitude(center_crop(ifft2c(masked), crop))
    if target is None:
        target = _magnitude(center_crop(ifft2c(kspace), crop))
    if tuple(target.shape) != tuple(zero_filled.shape):
        raise ValueError(f"target shape {tuple(target.shape)} does not match the crop {tuple(crop)}")
    masked = (masked[0] if single else masked).to(torch.complex64)
    return UndersampledSlice(zero_filled, target.float(), mask_t, masked)


def undersample(image: np.ndarray, mask: np.ndarray) -> UndersampledSlice:
    """Image (H, W), real or complex -> k-space by fft2c -> keep ``mask`` -> zero-filled magnitude."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape}")
    complex_image = torch.from_numpy(np.ascontiguousarray(image)).to(torch.complex64)
    return undersample_kspace(fft2c(complex_image), mask, tuple(image.shape), complex_image.abs().float())


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / (std + eps)."""
    return (x - mean) / (std + EPS)


def denormalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalize`; broadcasts per-sample statistics over (N, 1, H, W)."""
    while mean.dim() < x.dim():
        mean, std = mean.unsqueeze(-1), std.unsqueeze(-1)
    return x * (std + EPS) + mean


@dataclass(frozen=True)
class ReconTransform:
    """A source's slice (image or measured k-space) + mask seed -> the sample a network trains on.

    Returns a dict with ``input`` and ``target`` (1, h, w) float32, normalised by the zero-filled
    image's ``mean`` and ``std`` (0-dim float32 tensors); ``input`` is clamped to [-clamp, clamp].
    With ``return_kspace`` it also holds ``masked_kspace``, complex64 at the k-space size (before the
    crop): (H, W) for single-coil and simulated k-space, (C, H, W) multi-coil; and ``mask`` (H, W) bool,
    for models that work in k-space. K-space is not normalised.
    """

    mask_func: MaskFunc
    clamp: float | None = 6.0
    return_kspace: bool = False

    def __call__(self, data: SliceData, mask_seed: int) -> dict[str, torch.Tensor]:
        """Undersample ``data`` with the mask drawn from ``mask_seed`` and normalise."""
        if isinstance(data, KspaceSlice):
            kspace = torch.from_numpy(np.ascontiguousarray(data.kspace)).to(torch.complex64)
            target = None if data.target is None else torch.from_numpy(np.asarray(data.target, np.float32))
            mask = self.mask_func(tuple(kspace.shape[-2:]), mask_seed)
            sl = undersample_kspace(kspace, mask, tuple(data.crop), target)
        else:
            sl = undersample(data, self.mask_func(tuple(data.shape), mask_seed))
        mean, std = sl.zero_filled.mean(), sl.zero_filled.std()
        inputs = normalize(sl.zero_filled, mean, std)
        if self.clamp is not None:
            inputs = inputs.clamp(-self.clamp, self.clamp)
        sample = {
            "input": inputs.unsqueeze(0),
            "target": normalize(sl.target, mean, std).unsqueeze(0),
            "mean": mean,
            "std": std,
        }
        if self.return_kspace:
            sample["masked_kspace"] = sl.masked_kspace
            sample["mask"] = sl.mask
        return sample
