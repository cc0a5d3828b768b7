"""Slice transforms: images and measured k-space (single- and multi-coil) give the same kind of sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.masks import create
from data.sources.base import KspaceSlice
from data.transforms import EPS, ReconTransform
from tests.fixtures.mri_files import np_crop, np_fft2c, np_ifft2c, phantom

SEED = 7


class Recording:
    """A mask function that remembers the shapes it was asked for."""

    def __init__(self, inner):
        self.inner, self.shapes = inner, []

    def __call__(self, shape, seed):
        self.shapes.append(tuple(shape))
        return self.inner(shape, seed)


def expected(zero_filled: np.ndarray, target: np.ndarray, clamp: float | None = 6.0):
    mean, std = zero_filled.mean(), zero_filled.std(ddof=1)
    inputs = (zero_filled - mean) / (std + EPS)
    if clamp is not None:
        inputs = np.clip(inputs, -clamp, clamp)
    return inputs, (target - mean) / (std + EPS), mean, std


def check(sample, zero_filled, target, clamp=6.0):
    inputs, targets, mean, std = expected(zero_filled, target, clamp)
    assert set(sample) == {"input", "target", "mean", "std"}
    assert sample["input"].shape == (1, *target.shape) and sample["input"].dtype == torch.float32
    np.testing.assert_allclose(sample["input"][0].numpy(), inputs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sample["target"][0].numpy(), targets, rtol=1e-4, atol=1e-4)
    assert float(sample["mean"]) == pytest.approx(mean, rel=1e-4)
    assert float(sample["std"]) == pytest.approx(std, rel=1e-4)


def test_image_slices_are_undersampled_in_simulated_kspace():
    image = phantom(np.random.default_rng(0), (24, 20))
    mask = create("random_1d", acceleration=4)((24, 20), SEED)
    zero_filled = np.abs(np_ifft2c(np_fft2c(image) * mask))
    check(ReconTransform(create("random_1d", acceleration=4))(image, SEED), zero_filled, image)


def test_single_coil_kspace_is_masked_at_full_size_then_cropped():
    rng = np.random.default_rng(1)
    images = phantom(rng, (30, 26)) * np.exp(0.3j)
    kspace = np_fft2c(images).astype(np.complex64)
    target = np.abs(np_crop(images, (16, 16))).astype(np.float32)
    mask_func = Recording(create("equispaced_1d", acceleration=3))
    sample = ReconTransform(mask_func, clamp=None)(KspaceSlice(kspace, target, (16, 16)), SEED)
    assert mask_func.shapes == [(30, 26)]
    mask = create("equispaced_1d", acceleration=3)((30, 26), SEED)
    zero_filled = np.abs(np_crop(np_ifft2c(kspace * mask), (16, 16)))
    check(sample, zero_filled, target, clamp=None)


def test_multi_coil_kspace_gives_the_root_sum_of_squares():
    rng = np.random.default_rng(2)
    coils = phantom(rng, (4, 28, 24)).astype(np.complex64) * np.exp(1j * np.arange(4) / 3)[:, None, None]
    kspace = np_fft2c(coils).astype(np.complex64)
    mask = create("random_2d", acceleration=4)((28, 24), SEED)
    rss = lambda x: np.sqrt((np.abs(x) ** 2).sum(axis=0))  # noqa: E731
    zero_filled = rss(np_crop(np_ifft2c(kspace * mask), (20, 20)))
    target = rss(np_crop(coils, (20, 20)))
    transform = ReconTransform(create("random_2d", acceleration=4))
    check(transform(KspaceSlice(kspace, None, (20, 20)), SEED), zero_filled, target)


def test_fully_sampled_kspace_reproduces_its_target():
    rng = np.random.default_rng(3)
    image = phantom(rng, (20, 20)).astype(np.complex64)
    sample = ReconTransform(create("random_1d", acceleration=1), clamp=None)(
        KspaceSlice(np_fft2c(image).astype(np.complex64), None, (20, 20)), SEED
    )
    np.testing.assert_allclose(sample["input"].numpy(), sample["target"].numpy(), atol=1e-4)


def test_kspace_and_mask_only_on_request():
    rng = np.random.default_rng(4)
    coils = np_fft2c(phantom(rng, (3, 24, 22)).astype(np.complex64)).astype(np.complex64)
    mask = create("random_1d", acceleration=4)((24, 22), SEED)
    plain = ReconTransform(create("random_1d", acceleration=4))
    full = ReconTransform(create("random_1d", acceleration=4), return_kspace=True)
    data = KspaceSlice(coils, None, (16, 16))
    assert "masked_kspace" not in plain(data, SEED)
    sample = full(data, SEED)
    assert sample["masked_kspace"].shape == (3, 24, 22) and sample["masked_kspace"].dtype == torch.complex64
    np.testing.assert_array_equal(sample["mask"].numpy(), mask)
    np.testing.assert_allclose(sample["masked_kspace"].numpy(), coils * mask, atol=1e-6)
    np.testing.assert_array_equal(sample["input"].numpy(), plain(data, SEED)["input"].numpy())
    image_sample = full(np.abs(np_ifft2c(coils[0])).astype(np.float32)[:16, :16], SEED)
    assert image_sample["masked_kspace"].shape == (16, 16) and image_sample["mask"].shape == (16, 16)
    single = full(KspaceSlice(coils[1], None, (16, 16)), SEED)
    np.testing.assert_allclose(single["masked_kspace"].numpy(), coils[1] * mask, atol=1e-6)
