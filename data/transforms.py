"""One slice -> one training sample: simulate k-space, undersample, zero-fill, normalise.

The network sees the zero-filled magnitude image normalised by its own mean and standard deviation
(instance normalisation, fastMRI's U-Net baseline and FedMRI); the target is normalised with the
same statistics, which travel with the sample so metrics can be computed in the original scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data.fourier import fft2c, ifft2c
from data.masks import MaskFunc

EPS = 1e-11


@dataclass(frozen=True)
class UndersampledSlice:
    """The zero-filled reconstruction of one slice and what produced it."""

    zero_filled: torch.Tensor  # (H, W) float32 magnitude
    target: torch.Tensor  # (H, W) float32 magnitude
    mask: torch.Tensor  # (H, W) bool


def undersample(image: np.ndarray, mask: np.ndarray) -> UndersampledSlice:
    """Image (H, W), real or complex -> k-space by fft2c -> keep ``mask`` -> zero-filled magnitude."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape}")
    complex_image = torch.from_numpy(np.ascontiguousarray(image)).to(torch.complex64)
    mask_t = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))
    kspace = fft2c(complex_image) * mask_t
    return UndersampledSlice(
        zero_filled=ifft2c(kspace).abs().float(), target=complex_image.abs().float(), mask=mask_t
    )


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
    """Ground-truth image + mask seed -> the sample a reconstruction network trains on.

    Returns a dict with ``input`` and ``target`` (1, H, W) float32, normalised by the zero-filled
    image's ``mean`` and ``std`` (0-dim float32 tensors); ``input`` is clamped to [-clamp, clamp].
    """

    mask_func: MaskFunc
    clamp: float | None = 6.0

    def __call__(self, image: np.ndarray, mask_seed: int) -> dict[str, torch.Tensor]:
        """Undersample ``image`` with the mask drawn from ``mask_seed`` and normalise."""
        mask = self.mask_func(tuple(image.shape), mask_seed)
        sl = undersample(image, mask)
        mean, std = sl.zero_filled.mean(), sl.zero_filled.std()
        inputs = normalize(sl.zero_filled, mean, std)
        if self.clamp is not None:
            inputs = inputs.clamp(-self.clamp, self.clamp)
        return {
            "input": inputs.unsqueeze(0),
            "target": normalize(sl.target, mean, std).unsqueeze(0),
            "mean": mean,
            "std": std,
        }
