"""Dual-domain reconstruction: a k-space U-Net and an image U-Net, each with its own encoder and decoder.

The journal version of FedMRI applies the encoder/decoder split "in the frequency space and the image
space". This module is that cascade:

    k        = masked k-space (measured samples, zeros elsewhere)
    k_hat    = k + U_k(k)                      the k-space U-Net fills in the missing samples (residual)
    k_hat    = DC(k_hat)                       data consistency: measured samples put back exactly
    x        = ifft2c(k_hat)
    x_hat    = x + U_x(x)                      the image U-Net refines the complex image (residual)
    k        = DC(fft2c(x_hat))                final data consistency
    output   = |ifft2c(k)|

repeated ``cascades`` times with the same two U-Nets (weights shared across cascades, so parameter
names do not depend on the number of cascades): ``kspace.encoder.*``, ``kspace.decoder.*``,
``image.encoder.*``, ``image.decoder.*``. Complex tensors enter each U-Net as two channels (real,
imaginary).

K-space normalisation: the measured k-space spans many orders of magnitude (the DC sample is
~sqrt(H*W) times the mean image intensity). Before the cascade it is divided by ``scale``, the
standard deviation of the zero-filled magnitude image (the statistic the image pipeline normalises
by), so by Parseval the images inside the cascade have unit-scale intensities; the U-Nets'
InstanceNorm absorbs the remaining dynamic range of the k-space input. The output is returned in
the same normalised units as the image-only model's target: ``(|x| - mean) / scale``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from data.fourier import fft2c, ifft2c
from models.unet import Norm, Unet


def complex_to_channels(x: Tensor) -> Tensor:
    """Complex (N, H, W) -> real (N, 2, H, W) with real and imaginary parts as channels."""
    return torch.view_as_real(x).permute(0, 3, 1, 2).contiguous()


def channels_to_complex(x: Tensor) -> Tensor:
    """Real (N, 2, H, W) -> complex (N, H, W)."""
    return torch.view_as_complex(x.permute(0, 2, 3, 1).contiguous())


def data_consistency(kspace: Tensor, measured: Tensor, mask: Tensor) -> Tensor:
    """Replace the sampled locations of ``kspace`` by the measurements (hard data consistency)."""
    return torch.where(mask, measured, kspace)


class DualDomainNet(nn.Module):
    """K-space U-Net -> data consistency -> image U-Net -> data consistency, ``cascades`` times.

    Args:
        chans, num_pool_layers, drop_prob, norm: size of each of the two U-Nets.
        cascades: how many times the (weight-shared) pair is applied.
    """

    def __init__(
        self,
        chans: int = 32,
        num_pool_layers: int = 4,
        drop_prob: float = 0.0,
        norm: Norm = "instance",
        cascades: int = 1,
    ):
        super().__init__()
        if cascades < 1:
            raise ValueError(f"cascades must be >= 1, got {cascades}")
        self.cascades = cascades
        self.kspace = Unet(2, 2, chans, num_pool_layers, drop_prob, norm)
        self.image = Unet(2, 2, chans, num_pool_layers, drop_prob, norm)

    def reconstruct(self, masked_kspace: Tensor, mask: Tensor) -> Tensor:
        """Complex (N, H, W) masked k-space (already scaled) and bool mask -> complex image (N, H, W)."""
        mask = mask.expand_as(masked_kspace)
        kspace = masked_kspace
        for _ in range(self.cascades):
            kspace = kspace + channels_to_complex(self.kspace(complex_to_channels(kspace)))
            kspace = data_consistency(kspace, masked_kspace, mask)
            image = ifft2c(kspace)
            image = image + channels_to_complex(self.image(complex_to_channels(image)))
            kspace = data_consistency(fft2c(image), masked_kspace, mask)
        return ifft2c(kspace)

    def forward(self, masked_kspace: Tensor, mask: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
        """Unscaled masked k-space (N, H, W), mask, and the zero-filled image's mean and std (N,) ->
        the normalised magnitude image (N, 1, H, W), comparable with the normalised target."""
        scale = scale.reshape(-1, 1, 1)
        image = self.reconstruct(masked_kspace / scale, mask)
        return (image.abs() - mean.reshape(-1, 1, 1) / scale).unsqueeze(1)
