"""Reconstruction metrics on volumes, with fastMRI's evaluation conventions.

Each function takes numpy arrays of shape (slices, H, W) holding one volume. ``maxval`` defaults
to ``gt.max()`` over the whole volume, as in fastMRI's ``evaluate.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from skimage.metrics import structural_similarity

METRICS = ("nmse", "psnr", "ssim")


def _check(gt: np.ndarray, pred: np.ndarray) -> None:
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: gt {gt.shape} vs pred {pred.shape}")
    if gt.ndim != 3:
        raise ValueError(f"expected a volume (slices, H, W), got shape {gt.shape}")


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalised mean squared error ||gt - pred||^2 / ||gt||^2 over the volume."""
    _check(gt, pred)
    gt64, pred64 = gt.astype(np.float64), pred.astype(np.float64)
    return float(np.sum((gt64 - pred64) ** 2) / np.sum(gt64**2))


def psnr(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over the volume, peak = ``maxval`` or ``gt.max()``."""
    _check(gt, pred)
    maxval = float(gt.max()) if maxval is None else float(maxval)
    mse = np.mean((gt.astype(np.float64) - pred.astype(np.float64)) ** 2)
    return float(10.0 * np.log10(maxval**2 / mse)) if mse > 0 else float("inf")


def ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """Mean over slices of skimage's SSIM (7x7 window), data range = ``maxval`` or ``gt.max()``."""
    _check(gt, pred)
    maxval = float(gt.max()) if maxval is None else float(maxval)
    values = [structural_similarity(g, p, data_range=maxval) for g, p in zip(gt, pred)]
    return float(np.mean(values))


def volume_metrics(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """NMSE, PSNR and SSIM of one volume."""
    return {"nmse": nmse(gt, pred), "psnr": psnr(gt, pred), "ssim": ssim(gt, pred)}


class RunningStats:
    """Running mean and variance (Welford) of named scalar metrics, one value per volume."""

    def __init__(self) -> None:
        self.count = 0
        self._mean: dict[str, float] = {}
        self._m2: dict[str, float] = {}

    def update(self, values: dict[str, float]) -> None:
        """Add one volume's metrics."""
        self.count += 1
        for key, value in values.items():
            mean = self._mean.get(key, 0.0)
            delta = value - mean
            mean += delta / self.count
            self._mean[key] = mean
            self._m2[key] = self._m2.get(key, 0.0) + delta * (value - mean)

    def extend(self, items: Iterable[dict[str, float]]) -> RunningStats:
        """Add many volumes' metrics; returns self."""
        for values in items:
            self.update(values)
        return self

    def mean(self) -> dict[str, float]:
        """Mean of each metric over the volumes seen."""
        return dict(self._mean)

    def std(self) -> dict[str, float]:
        """Sample standard deviation of each metric (0 with fewer than two volumes)."""
        if self.count < 2:
            return {key: 0.0 for key in self._mean}
        return {key: float(np.sqrt(m2 / (self.count - 1))) for key, m2 in self._m2.items()}
