"""Centred orthonormal FFTs."""

import numpy as np
import torch

from data.fourier import center_crop, fft2c, ifft2c, rss


def test_round_trip_is_exact_for_odd_and_even_sizes():
    g = torch.Generator().manual_seed(0)
    for shape in [(8, 8), (7, 9), (3, 16, 15)]:
        x = torch.randn(*shape, generator=g, dtype=torch.complex64)
        assert torch.allclose(ifft2c(fft2c(x)), x, atol=1e-5)
        assert torch.allclose(fft2c(ifft2c(x)), x, atol=1e-5)


def test_orthonormal_and_centred():
    x = torch.randn(16, 12, dtype=torch.complex64)
    k = fft2c(x)
    assert torch.allclose(k.abs().pow(2).sum(), x.abs().pow(2).sum(), rtol=1e-4)  # Parseval
    const = torch.ones(16, 12, dtype=torch.complex64)
    k = fft2c(const).abs()
    assert k[8, 6] > 0 and torch.isclose(k[8, 6], torch.tensor(np.sqrt(16 * 12), dtype=torch.float32))
    assert k.sum() - k[8, 6] < 1e-3  # all energy at the centre (DC)


def test_matches_numpy_definition():
    x = np.random.default_rng(1).standard_normal((10, 11)) + 0j
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x), norm="ortho"))
    assert np.allclose(fft2c(torch.from_numpy(x)).numpy(), expected)


def test_center_crop_and_rss():
    x = torch.arange(36.0).reshape(6, 6)
    assert center_crop(x, (2, 2)).tolist() == [[14.0, 15.0], [20.0, 21.0]]
    coils = torch.tensor([[[3.0]], [[4.0]]])
    assert rss(coils).item() == 5.0
