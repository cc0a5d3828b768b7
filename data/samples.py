"""A split of a source as a dataset of normalised (input, target) samples, the cache of samples that are
the same every round, and the checks that refuse samples nothing can be learnt from.

A sample's mask seed is keyed, never drawn from global state: training masks by (seed, site, round,
epoch, volume, slice) when they are redrawn, validation and test masks (and training masks that are not
redrawn) by (seed, site, volume, slice), and one per site when the site's mask is fixed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from data.sources import KspaceSlice, SliceData, Source, VolumeInfo
from data.sources.base import Split
from data.transforms import EPS, ReconTransform
from utils.errors import UserError
from utils.seeding import stable_seed

# A training item key: (sample index, round, epoch); evaluation keys are plain indices.
ItemKey = int | tuple[int, int, int]


class SliceDataset(Dataset):
    """All slices of one split of a source, as normalised (input, target) samples."""

    def __init__(
        self,
        source: Source,
        split: Split,
        transform: ReconTransform,
        *,
        seed: int,
        site: str,
        redraw_masks: bool = False,
        fixed_mask: bool = False,
        cache: SampleCache | None = None,
    ):
        self.source = source
        self.split = split
        self.transform = transform
        self.seed = seed
        self.site = site
        self.redraw_masks = redraw_masks
        self.fixed_mask = fixed_mask
        self.cache = cache
        self.volumes: list[VolumeInfo] = source.volumes(split)
        self.index = [(v, s) for v, vol in enumerate(self.volumes) for s in range(vol.num_slices)]

    def __len__(self) -> int:
        return len(self.index)

    def check_volumes(self) -> None:
        """Refuse degenerate volumes before training, naming them: the middle slice of every volume must give
        a finite sample and an image that is not constant (an all-zero or constant volume has nothing to
        reconstruct and normalises to noise or NaN). Every slice read later is checked for finite values."""
        start = 0
        for volume in self.volumes:
            middle = volume.num_slices // 2
            sample = self[start + middle]  # checks finiteness
            if constant_sample(sample):
                raise UserError(
                    f"site {self.site}: volume {volume.name}: its middle slice (slice {middle}) is constant "
                    f"(value {float(sample['mean']):.3g}); an all-zero or constant volume cannot be "
                    "trained on"
                )
            if _spread(sample) <= 1e-6 * abs(float(sample["mean"])):
                raise UserError(
                    f"site {self.site}: volume {volume.name}: the target of its middle slice "
                    f"(slice {middle}) is constant (an all-zero reconstruction?); "
                    "there is nothing to learn from it"
                )
            start += volume.num_slices

    def mask_seed(self, key: ItemKey) -> int:
        """Seed of the mask for an item: one per site when fixed, per draw when redrawing, else fixed per
        (volume, slice)."""
        if self.fixed_mask:
            return stable_seed(self.seed, self.site, "fixed-mask")
        i, draw = (key, None) if isinstance(key, int) else (key[0], key[1:])
        volume, slice_index = self.volumes[self.index[i][0]], self.index[i][1]
        if self.redraw_masks and draw is not None:
            return stable_seed(self.seed, self.site, "train-mask", *draw, volume.name, slice_index)
        return stable_seed(self.seed, self.site, "mask", volume.name, slice_index)

    def __getitem__(self, key: ItemKey) -> dict[str, Any]:
        i = key if isinstance(key, int) else key[0]
        fixed = not self.redraw_masks  # the same sample every round (a redrawing set is never cached)
        if fixed and self.cache is not None and (self.split, i) in self.cache:
            return dict(self.cache[self.split, i])
        vol_index, slice_index = self.index[i]
        volume = self.volumes[vol_index]
        data = self.source.read_slice(volume, slice_index)  # an image, or measured k-space
        sample = self.transform(data, self.mask_seed(key))
        problem = sample_problem(data, sample)
        if problem:
            raise UserError(f"site {self.site}: volume {volume.name}, slice {slice_index}: {problem}")
        sample["volume"] = volume.name
        sample["slice"] = slice_index
        if fixed and self.cache is not None:
            self.cache.put((self.split, i), sample)
        return dict(sample)


class SampleCache:
    """Samples that are the same every round (a fixed mask on fixed data), kept up to a memory budget.

    A sample's mask is keyed by (seed, site, volume, slice) unless training masks are redrawn, and its
    data never changes, so undersampling it again every round gives the same tensors; the cache keeps
    the first result. Samples past the budget are simply recomputed.
    """

    def __init__(self, max_bytes: float):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._samples: dict[tuple[str, int], dict[str, Any]] = {}

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._samples

    def __getitem__(self, key: tuple[str, int]) -> dict[str, Any]:
        return self._samples[key]

    def __len__(self) -> int:
        return len(self._samples)

    def put(self, key: tuple[str, int], sample: dict[str, Any]) -> None:
        """Keep ``sample`` under ``key`` if it fits in the budget."""
        size = sum(v.numel() * v.element_size() for v in sample.values() if isinstance(v, torch.Tensor))
        if self.bytes + size <= self.max_bytes:
            self._samples[key] = sample
            self.bytes += size


def sample_problem(data: SliceData, sample: dict[str, Any]) -> str | None:
    """Why a sample cannot be trained on (non-finite source values, or values that overflow float32 in the
    FFT or the normalisation), or None when it can."""
    if all(bool(torch.isfinite(sample[k]).all()) for k in ("input", "target", "mean", "std")):
        if constant_sample(sample) and _spread(sample) > 1e-6 * abs(float(sample["mean"])):
            # e.g. an all-zero k-space slice beside a stored target: normalised, the target explodes
            return (
                "its zero-filled input is constant (an empty k-space?) while its target is not, so there "
                "is nothing to reconstruct from; leave the slice out (source.slices) or fix the file"
            )
        return None
    raw = np.asarray(data.kspace if isinstance(data, KspaceSlice) else data)
    if not np.isfinite(raw).all():
        return f"holds NaN or infinite {'k-space' if isinstance(data, KspaceSlice) else 'image'} values"
    largest = float(np.abs(raw).max()) if raw.size else 0.0
    return (
        f"its values (largest magnitude {largest:.3g}) overflow float32 in the Fourier transform or the "
        "normalisation; rescale the data"
    )


def _spread(sample: dict[str, Any]) -> float:
    """The target's range of values in the data's own units (the sample holds it normalised)."""
    target = sample["target"]
    return float(target.max() - target.min()) * (float(sample["std"]) + EPS)


def constant_sample(sample: dict[str, Any]) -> bool:
    """Whether a sample's zero-filled image is constant (standard deviation at most 1e-6 of its mean)."""
    std, mean = float(sample["std"]), float(sample["mean"])
    return not std > 1e-6 * abs(mean)
