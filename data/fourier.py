"""Centred, orthonormal 2D Fourier transforms and small image helpers (fastMRI conventions).

All functions act on the last two dimensions of complex tensors, so they work on one slice
(H, W), on coils (C, H, W) and on batches (N, C, H, W) alike.
"""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Image -> k-space with the DC component at the centre: fftshift(fft2(ifftshift(x)), ortho)."""
    shifted = torch.fft.ifftshift(image, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred k-space -> image; the exact inverse of :func:`fft2c`."""
    shifted = torch.fft.ifftshift(kspace, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def rss(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Root sum of squares of magnitudes over the coil dimension."""
    return torch.sqrt((x.abs() ** 2).sum(dim))


def center_crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Crop the last two dimensions to ``shape`` around the centre (fastMRI's convention for odd sizes)."""
    h, w = shape
    if not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} to {shape}")
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]
