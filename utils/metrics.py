"""Reconstruction metrics on volumes, with fastMRI's evaluation conventions.

The metrics (:func:`nmse`, :func:`psnr`, :func:`ssim`) take numpy arrays of shape (slices, H, W)
holding one volume; ``maxval`` defaults to ``gt.max()`` over the whole volume, as in fastMRI's
``evaluate.py``. :func:`summarise_volumes` reduces per-volume scores to their means and spreads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from runstats import Statistics
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

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
    """Peak signal-to-noise ratio in dB over the volume (skimage's), peak = ``maxval`` or ``gt.max()``.

    The arrays are cast to float64 first: given float32, skimage would take the differences in
    float32, which moves the result in the seventh digit.
    """
    _check(gt, pred)
    maxval = float(gt.max()) if maxval is None else float(maxval)
    with np.errstate(divide="ignore"):  # identical volumes: inf dB
        value = peak_signal_noise_ratio(gt.astype(np.float64), pred.astype(np.float64), data_range=maxval)
    return float(value)


def ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """Mean over slices of skimage's SSIM (7x7 window), data range = ``maxval`` or ``gt.max()``."""
    _check(gt, pred)
    maxval = float(gt.max()) if maxval is None else float(maxval)
    values = [structural_similarity(g, p, data_range=maxval) for g, p in zip(gt, pred)]
    return float(np.mean(values))


def volume_metrics(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """NMSE, PSNR and SSIM of one volume."""
    return {"nmse": nmse(gt, pred), "psnr": psnr(gt, pred), "ssim": ssim(gt, pred)}


def summarise_volumes(scores: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean, sample standard deviation (``<name>_std``, 0 below two volumes) and number of volumes
    (``volumes``) of each named metric, from one dict of metrics per volume."""
    stats: dict[str, Statistics] = {}
    count = 0
    for values in scores:
        count += 1
        for key, value in values.items():
            stats.setdefault(key, Statistics()).push(value)
    mean = {key: float(s.mean()) for key, s in stats.items()}
    std = {f"{key}_std": float(s.stddev(ddof=1)) if len(s) > 1 else 0.0 for key, s in stats.items()}
    return {**mean, **std, "volumes": count}


def summarise(
    per_volume: Mapping[str, Mapping[str, Mapping[str, float]]], which: str = "model"
) -> dict[str, float]:
    """:func:`summarise_volumes` of one entry (``model`` or ``zero_filled``) of per-volume scores."""
    return summarise_volumes(v[which] for v in per_volume.values())
