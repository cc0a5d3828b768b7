"""Volume metrics against direct numpy / skimage computations."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from utils.metrics import RunningStats, nmse, psnr, ssim


@pytest.fixture
def volumes():
    rng = np.random.default_rng(0)
    gt = rng.random((4, 32, 30)).astype(np.float32) * 3
    pred = gt + 0.1 * rng.standard_normal(gt.shape).astype(np.float32)
    return gt, pred


def test_nmse(volumes):
    gt, pred = volumes
    assert nmse(gt, pred) == pytest.approx(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2, rel=1e-6)


def test_psnr_uses_volume_max(volumes):
    gt, pred = volumes
    assert psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=gt.max()), rel=1e-6)
    assert psnr(gt, pred, maxval=10) == pytest.approx(
        peak_signal_noise_ratio(gt, pred, data_range=10), rel=1e-6
    )


def test_ssim_is_mean_over_slices(volumes):
    gt, pred = volumes
    expected = np.mean([structural_similarity(g, p, data_range=gt.max()) for g, p in zip(gt, pred)])
    assert ssim(gt, pred) == pytest.approx(expected, rel=1e-6)
    assert ssim(gt, gt) == pytest.approx(1.0)


def test_shape_checks(volumes):
    gt, pred = volumes
    with pytest.raises(ValueError):
        nmse(gt, pred[:2])
    with pytest.raises(ValueError):
        psnr(gt[0], pred[0])


def test_running_stats():
    values = [1.0, 2.0, 4.0, 7.0]
    stats = RunningStats().extend({"a": v} for v in values)
    assert stats.mean()["a"] == pytest.approx(np.mean(values))
    assert stats.std()["a"] == pytest.approx(np.std(values, ddof=1))
