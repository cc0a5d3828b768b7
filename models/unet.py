"""The fastMRI U-Net, split into a shared encoder and a client-specific decoder.

Parameter names follow the split: ``encoder.down.<i>.*`` and ``encoder.bottleneck.*`` for the
encoder, ``decoder.up.<i>.*`` and ``decoder.head.*`` for the decoder, so a federated strategy can
choose what travels by name alone. Every client runs the full network with skip connections.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["instance", "instance_affine", "batch"]


def make_norm(kind: Norm, channels: int) -> nn.Module:
    """Normalisation layer by name: the paper's parameter-free InstanceNorm, or variants with weights."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    if kind == "instance_affine":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown normalisation {kind!r}; expected instance, instance_affine or batch")


class ConvBlock(nn.Module):
    """Two [3x3 conv (no bias) -> norm -> LeakyReLU(0.2) -> Dropout2d] layers."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float, norm: Norm = "instance"):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            make_norm(norm, out_chans),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout2d(drop_prob),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            make_norm(norm, out_chans),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout2d(drop_prob),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, out_chans, H, W)."""
        return self.layers(x)


class UpBlock(nn.Module):
    """2x transposed conv -> norm -> LeakyReLU, concatenation with the skip tensor, then a ConvBlock."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float, norm: Norm = "instance"):
        super().__init__()
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            make_norm(norm, out_chans),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.conv = ConvBlock(2 * out_chans, out_chans, drop_prob, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, h, w) and skip (N, out_chans, H, W) -> (N, out_chans, H, W)."""
        x = self.upsample(x)
        pad_w = skip.shape[-1] - x.shape[-1]
        pad_h = skip.shape[-2] - x.shape[-2]
        if pad_w or pad_h:  # odd input sizes: reflect-pad right/bottom to the skip's size
            x = F.pad(x, [0, pad_w, 0, pad_h], mode="reflect")
        return self.conv(torch.cat([x, skip], dim=1))


class UnetEncoder(nn.Module):
    """Down path and bottleneck: the part FedMRI shares between sites."""

    def __init__(
        self, in_chans: int, chans: int, num_pool_layers: int, drop_prob: float, norm: Norm = "instance"
    ):
        super().__init__()
        widths = [chans * 2**i for i in range(num_pool_layers + 1)]
        ins = [in_chans] + widths[:-2]
        self.down = nn.ModuleList(ConvBlock(i, o, drop_prob, norm) for i, o in zip(ins, widths[:-1]))
        self.bottleneck = ConvBlock(widths[-2], widths[-1], drop_prob, norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image (N, C, H, W) -> (bottleneck features, skip tensors from shallow to deep)."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, kernel_size=2, stride=2, padding=0)
        return self.bottleneck(x), skips


class UnetDecoder(nn.Module):
    """Up path and 1x1 head: the part that stays at each site under FedMRI."""

    def __init__(
        self, out_chans: int, chans: int, num_pool_layers: int, drop_prob: float, norm: Norm = "instance"
    ):
        super().__init__()
        widths = [chans * 2**i for i in range(num_pool_layers, -1, -1)]
        self.up = nn.ModuleList(UpBlock(i, o, drop_prob, norm) for i, o in zip(widths[:-1], widths[1:]))
        self.head = nn.Conv2d(chans, out_chans, kernel_size=1)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Bottleneck features and the encoder's skips -> output image (N, out_chans, H, W)."""
        for block, skip in zip(self.up, reversed(skips)):
            x = block(x, skip)
        return self.head(x)


class Unet(nn.Module):
    """fastMRI U-Net (Ronneberger et al. 2015, as in Zbontar et al. 2018) with named encoder/decoder halves.

    Args:
        in_chans: input channels (1 for a magnitude image).
        out_chans: output channels.
        chans: channels of the first block; each pool doubles them.
        num_pool_layers: number of down/up-sampling stages.
        drop_prob: Dropout2d probability.
        norm: ``instance`` (the paper's, no parameters), ``instance_affine`` or ``batch``.
    """

    def __init__(
        self,
        in_chans: int = 1,
        out_chans: int = 1,
        chans: int = 32,
        num_pool_layers: int = 4,
        drop_prob: float = 0.0,
        norm: Norm = "instance",
    ):
        super().__init__()
        self.encoder = UnetEncoder(in_chans, chans, num_pool_layers, drop_prob, norm)
        self.decoder = UnetDecoder(out_chans, chans, num_pool_layers, drop_prob, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, out_chans, H, W); any H, W >= 2**num_pool_layers."""
        features, skips = self.encoder(x)
        return self.decoder(features, skips)


def activation_bytes(chans: int, num_pool_layers: int, height: int, width: int, batch: int) -> int:
    """About the bytes of activations one training step of :class:`Unet` keeps for its backward pass.

    Counted in float32 from the layers' outputs that autograd saves: each ConvBlock at level l (``chans *
    2**l`` channels at ``(H / 2**l) x (W / 2**l)``) keeps about 6 tensors of its width (conv, norm and
    dropout outputs, twice), and each UpBlock about 10 (transposed conv and norm outputs, the
    concatenation of twice its width, its ConvBlock); the bottleneck keeps 6 at level ``num_pool_layers``.
    So per sample 16 * chans * H * W / 2**l over the levels l < num_pool_layers plus 6 * chans * H * W /
    2**num_pool_layers values. The tensors autograd actually saves (counted with saved_tensors_hooks) were
    78% of this for (chans, pools, size, batch) = (4, 2, 32, 16) and 101% for (32, 4, 128, 2); gradients,
    optimiser state and workspace come on top.
    """
    pixels = height * width
    values = sum(16 * chans * pixels // 2**level for level in range(num_pool_layers))
    values += 6 * chans * pixels // 2**num_pool_layers
    return 4 * batch * values
