"""Volume metrics against direct numpy / skimage computations."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from utils.metrics import nmse, psnr, ssim, summarise_volumes


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


def test_psnr_matches_the_float64_formula_bitwise():
    """skimage's PSNR on float64 copies equals 10 log10(peak^2 / MSE) computed in float64 to the last bit
    (500 random float32 volumes, 1 to 11 slices, peaks 0.1 to 1e4: all equal; skimage given the float32
    arrays themselves differs by up to 2e-8 dB), and identical volumes give inf."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        shape = (int(rng.integers(1, 6)), int(rng.integers(8, 40)), int(rng.integers(8, 40)))
        gt = (rng.random(shape) * rng.uniform(0.1, 1e4)).astype(np.float32)
        pred = (gt + rng.uniform(1e-3, 0.5) * gt.max() * rng.standard_normal(shape)).astype(np.float32)
        mse = np.mean((gt.astype(np.float64) - pred.astype(np.float64)) ** 2)
        assert psnr(gt, pred) == float(10.0 * np.log10(float(gt.max()) ** 2 / mse))
    assert psnr(gt, gt) == float("inf")


def test_summarise_volumes_against_numpy():
    """Means and sample stds agree with numpy to 1e-14 (relative); order: means, stds, then the count."""
    rng = np.random.default_rng(2)
    values = {
        "psnr": rng.normal(30, 3, 37),
        "ssim": rng.uniform(0.5, 1, 37),
        "nmse": rng.lognormal(-4, 1, 37),
    }
    summary = summarise_volumes({k: float(v[i]) for k, v in values.items()} for i in range(37))
    assert list(summary) == ["psnr", "ssim", "nmse", "psnr_std", "ssim_std", "nmse_std", "volumes"]
    assert summary["volumes"] == 37
    for key, v in values.items():
        assert summary[key] == pytest.approx(np.mean(v), rel=1e-14, abs=0)
        assert summary[f"{key}_std"] == pytest.approx(np.std(v, ddof=1), rel=1e-14, abs=0)
    small = [1.0, 2.0, 4.0, 7.0]
    summary = summarise_volumes({"a": v} for v in small)
    assert summary == {"a": 3.5, "a_std": pytest.approx(np.std(small, ddof=1), rel=1e-15), "volumes": 4}


def test_summarise_volumes_below_two_volumes():
    assert summarise_volumes([]) == {"volumes": 0}
    assert summarise_volumes([{"psnr": 31.0}]) == {"psnr": 31.0, "psnr_std": 0.0, "volumes": 1}
