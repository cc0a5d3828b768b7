"""The dual-domain cascade: exact data consistency, odd sizes, parameter names."""

import pytest
import torch

from data.fourier import fft2c, ifft2c
from models.dual_domain import DualDomainNet, channels_to_complex, complex_to_channels


def measured(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(*shape, generator=g) * torch.exp(1j * torch.rand(*shape, generator=g))
    mask = torch.rand(shape[-1], generator=g) < 0.4
    mask = mask.expand(*shape).clone()
    return fft2c(image.to(torch.complex64)) * mask, mask


@pytest.mark.parametrize("cascades", [1, 2])
def test_measured_samples_are_reproduced_exactly(cascades):
    torch.manual_seed(0)
    net = DualDomainNet(chans=4, num_pool_layers=2, cascades=cascades)
    kspace, mask = measured((2, 32, 30))
    with torch.no_grad():
        out = net.reconstruct(kspace, mask)
    recovered = fft2c(out)
    assert torch.allclose(recovered[mask], kspace[mask], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(recovered[~mask], torch.zeros_like(recovered[~mask]))  # it fills the gaps


@pytest.mark.parametrize("shape", [(1, 33, 47), (2, 17, 19), (1, 64, 61)])
def test_shapes_for_odd_sizes(shape):
    net = DualDomainNet(chans=2, num_pool_layers=2)
    kspace, mask = measured(shape)
    mean, std = torch.ones(shape[0]), torch.full((shape[0],), 2.0)
    out = net(kspace, mask, mean, std)
    assert out.shape == (shape[0], 1, *shape[1:]) and out.dtype == torch.float32


def test_output_is_in_the_normalised_units_of_the_target():
    net = DualDomainNet(chans=2, num_pool_layers=2)
    for p in net.parameters():
        torch.nn.init.zeros_(p)  # both U-Nets output 0: the cascade returns the zero-filled image
    kspace, mask = measured((1, 16, 16))
    zero_filled = ifft2c(kspace).abs()
    mean, std = zero_filled.mean().reshape(1), zero_filled.std().reshape(1)
    with torch.no_grad():
        out = net(kspace, mask, mean, std)
    assert torch.allclose(out[:, 0], (zero_filled - mean) / std, atol=1e-5)


def test_parameter_names_carry_both_encoders_and_decoders():
    names = [n for n, _ in DualDomainNet(chans=2, num_pool_layers=2, cascades=3).named_parameters()]
    prefixes = {".".join(n.split(".")[:2]) for n in names}
    assert prefixes == {"kspace.encoder", "kspace.decoder", "image.encoder", "image.decoder"}


def test_channel_round_trip():
    x = torch.randn(3, 5, 7, dtype=torch.complex64)
    assert torch.equal(channels_to_complex(complex_to_channels(x)), x)
    assert complex_to_channels(x).shape == (3, 2, 5, 7)
