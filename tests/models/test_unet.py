"""The split U-Net: architecture, parameter names and counts, odd sizes."""

import pytest
import torch
from torch import nn

from models.unet import Unet


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("chans", [1, 2, 8, 32])
def test_split_parameter_counts_match_the_closed_forms(chans):
    net = Unet(chans=chans, num_pool_layers=4)
    assert count(net.encoder) == 9 * (chans + 511 * chans**2)
    assert count(net.decoder) == 2975 * chans**2 + chans + 1
    assert count(net) == count(net.encoder) + count(net.decoder)


def test_paper_size_counts():
    net = Unet(chans=32, num_pool_layers=4)
    assert count(net.encoder) == 4_709_664
    assert count(net.decoder) == 3_046_433
    assert count(net) == 7_756_097


def test_parameter_names_follow_the_split():
    names = [n for n, _ in Unet(chans=2, num_pool_layers=4).named_parameters()]
    assert all(
        n.startswith(("encoder.down.", "encoder.bottleneck.", "decoder.up.", "decoder.head.")) for n in names
    )
    assert {n.split(".")[2] for n in names if n.startswith("encoder.down.")} == {"0", "1", "2", "3"}
    assert {n.split(".")[2] for n in names if n.startswith("decoder.up.")} == {"0", "1", "2", "3"}
    assert [n for n in names if n.startswith("decoder.head.")] == ["decoder.head.weight", "decoder.head.bias"]


def test_architecture_details():
    net = Unet(chans=4, num_pool_layers=2)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(c.bias is None for c in convs)
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not n.affine for n in norms)
    assert all(m.negative_slope == 0.2 for m in net.modules() if isinstance(m, nn.LeakyReLU))
    ups = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 2 and all(u.bias is None and u.stride == (2, 2) for u in ups)
    assert net.decoder.head.kernel_size == (1, 1) and net.decoder.head.bias is not None
    widths = [b.layers[0].out_channels for b in net.encoder.down] + [
        net.encoder.bottleneck.layers[0].out_channels
    ]
    assert widths == [4, 8, 16]


@pytest.mark.parametrize("shape", [(32, 32), (33, 47), (61, 64), (17, 19)])
def test_output_shape_matches_input_for_odd_sizes(shape):
    net = Unet(chans=2, num_pool_layers=3)
    x = torch.randn(2, 1, *shape)
    assert net(x).shape == x.shape


def test_encoder_is_the_only_input_of_the_decoder():
    torch.manual_seed(0)
    net = Unet(chans=2, num_pool_layers=2)
    x = torch.randn(1, 1, 16, 16)
    feats, skips = net.encoder(x)
    assert torch.equal(net.decoder(feats, skips), net(x))
    assert feats.shape == (1, 8, 4, 4) and [s.shape[1] for s in skips] == [2, 4]


@pytest.mark.parametrize("norm", ["instance_affine", "batch"])
def test_norm_variants_have_parameters(norm):
    base = count(Unet(chans=2, num_pool_layers=2))
    assert count(Unet(chans=2, num_pool_layers=2, norm=norm)) > base
