"""One site's data: a source, its undersampling masks and the train/val/test loaders.

Randomness is keyed, never drawn from global state: the training order and the training masks
come from (seed, site, round, epoch, sample), and validation/test masks from (seed, site, volume,
slice), so a run is reproducible across processes, worker counts and resumes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data import masks
from data.sources import KspaceSlice, SliceData, Source, SourceContext, VolumeInfo, build_source
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
                    f"site {self.site}: volume {volume.name}: the target of its middle slice (slice {middle}) "
                    "is constant (an all-zero reconstruction?); there is nothing to learn from it"
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


def round_order(num_samples: int, *, seed: int, site: str, rnd: int, epoch: int) -> list[int]:
    """The shuffled order of a site's training samples in one epoch of one round."""
    generator = torch.Generator().manual_seed(stable_seed(seed, site, "order", rnd, epoch))
    return torch.randperm(num_samples, generator=generator).tolist()


class RoundSampler(Sampler):
    """Shuffles a training set with an order fixed by (seed, site, round, epoch).

    The federation sets :attr:`round` before each local fit; Lightning calls :meth:`set_epoch`.
    Each item is yielded as ``(index, round, epoch)`` so the dataset can draw that item's mask.

    Data-parallel training shards the order over ``num_replicas`` ranks: the order is padded (from
    its start) to a multiple of ``num_replicas`` and rank r takes every ``num_replicas``-th item from
    position r, so the k-th batches of all ranks together hold exactly the items of the k-th batch of
    one process whose batch is ``num_replicas`` times larger.
    """

    def __init__(self, num_samples: int, *, seed: int, site: str, num_replicas: int = 1, rank: int = 0):
        self.num_samples = num_samples
        self.seed = seed
        self.site = site
        self.round = 1
        self.epoch = 0
        self.num_replicas = num_replicas
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch of a fit."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_samples // self.num_replicas)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        order = round_order(
            self.num_samples, seed=self.seed, site=self.site, rnd=self.round, epoch=self.epoch
        )
        padded = len(self) * self.num_replicas
        order = (order * (padded // max(len(order), 1) + 1))[:padded]
        for i in order[self.rank :: self.num_replicas]:
            yield (i, self.round, self.epoch)


def volume_shard(dataset: SliceDataset, num_replicas: int, rank: int) -> list[int]:
    """Indices of the slices of the volumes that ``rank`` scores: volume v goes to rank v % num_replicas.

    Every volume is scored by exactly one rank, whole, however the volumes divide over the ranks.
    """
    return [i for i, (volume, _) in enumerate(dataset.index) if volume % num_replicas == rank]


class SiteDataModule(L.LightningDataModule):
    """Train/val/test loaders of one site, split by subject by its source.

    Args:
        site: the site's config (name, source options, mask, batch size).
        seed: the run's seed.
        cache_dir: where sources may cache generated or converted data.
        clamp: clamp of the normalised input (None = off).
        num_workers: loader worker processes.
        return_kspace: samples also carry ``masked_kspace`` and ``mask`` (for k-space models).
        persistent_workers: keep the workers alive across fits and rounds (when ``num_workers`` > 0).
        pin_memory: page-locked batches (None: when CUDA is available).
        sample_cache_mb: memory for samples that are the same every round (0 = recompute them); used
            only without loader workers, which would each keep a copy.
    """

    def __init__(
        self,
        site,
        *,
        seed: int,
        cache_dir: str | Path,
        clamp: float | None = 6.0,
        num_workers: int = 0,
        return_kspace: bool = False,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        sample_cache_mb: float = 0.0,
    ):
        super().__init__()
        self.name: str = site.name
        self.batch_size: int = site.batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.redraw_masks = bool(site.mask.redraw_train)
        self.mask_options = site.mask
        self.transform = ReconTransform(masks.build_mask(site.mask), clamp=clamp, return_kspace=return_kspace)
        self.source = build_source(
            site.source, SourceContext(site=site.name, seed=seed, cache_dir=Path(cache_dir))
        )
        # Loader workers would each fill a copy of their own: caching is for in-process loading.
        cached = sample_cache_mb > 0 and num_workers == 0
        self.cache = SampleCache(sample_cache_mb * 2**20) if cached else None
        self.datasets: dict[str, SliceDataset] = {}
        self._loaders: dict[str, DataLoader] = {}
        self.train_sampler: RoundSampler | None = None
        self.num_replicas, self.rank = 1, 0

    def setup(self, stage: str | None = None) -> None:
        """Prepare the source (check, generate/convert, index) and build the three datasets; idempotent.

        Bad data (missing folders, unreadable files) raises UserError here, before any training.
        """
        if self.datasets:
            return
        self.source.prepare()
        site_mask = self.mask_options
        for split in ("train", "val", "test"):
            self.datasets[split] = SliceDataset(
                self.source,
                split,
                self.transform,
                seed=self.seed,
                site=self.name,
                redraw_masks=self.redraw_masks and split == "train",
                fixed_mask=bool(getattr(site_mask, "fixed", False)),
                cache=self.cache,
            )
        self.train_sampler = RoundSampler(
            len(self.datasets["train"]),
            seed=self.seed,
            site=self.name,
            num_replicas=self.num_replicas,
            rank=self.rank,
        )
        for dataset in self.datasets.values():
            dataset.check_volumes()  # a mask file that does not fit the data, or a degenerate volume, fails

    @property
    def num_train_slices(self) -> int:
        """Training slices of this site (aggregation weight under ``client_weights: samples``)."""
        self.setup()
        return len(self.datasets["train"])

    def shard(self, num_replicas: int, rank: int) -> None:
        """Data-parallel loaders for ``rank`` of ``num_replicas``: its share of every training batch,
        and whole volumes of the validation and test splits (each volume on exactly one rank)."""
        self.num_replicas, self.rank = num_replicas, rank
        self._loaders.clear()
        if self.train_sampler is not None:
            self.train_sampler.num_replicas, self.train_sampler.rank = num_replicas, rank

    def set_round(self, rnd: int) -> None:
        """Key the training order and masks of the coming local fit to round ``rnd``."""
        self.setup()
        self.train_sampler.round = rnd

    def _loader(self, split: str) -> DataLoader:
        self.setup()
        if split not in self._loaders:
            if split == "train":
                sampler = self.train_sampler
            elif self.num_replicas > 1:
                sampler = volume_shard(self.datasets[split], self.num_replicas, self.rank)
            else:
                sampler = None
            self._loaders[split] = DataLoader(
                self.datasets[split],
                batch_size=self.batch_size,
                sampler=sampler,
                shuffle=False,
                num_workers=self.num_workers,
                persistent_workers=self.persistent_workers and self.num_workers > 0,
                pin_memory=self.pin_memory,
            )
        return self._loaders[split]

    def foreign_batches(self, key: str, rnd: int) -> Iterator[dict[str, Any]]:
        """Endless shuffled batches of this site's training slices for use inside another site's local
        fit in the same process (FL-MRCM's target images): passes in an order keyed by (seed, site,
        ``key``, round, pass), training masks drawn as for the site's own fit."""
        self.setup()
        dataset = self.datasets["train"]
        for passes in itertools.count():
            generator = torch.Generator().manual_seed(stable_seed(self.seed, self.name, key, rnd, passes))
            order = torch.randperm(len(dataset), generator=generator).tolist()
            keys = [(i, rnd, passes) for i in order]
            yield from DataLoader(dataset, batch_size=self.batch_size, sampler=keys, shuffle=False)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training slices (order and masks keyed by round and epoch)."""
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        """Validation slices in volume order, with fixed masks."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Test slices in volume order, with fixed masks."""
        return self._loader("test")


class PooledDataset(Dataset):
    """The training slices of several sites as one dataset, keyed by (member, item key)."""

    def __init__(self, members: list[SiteDataModule]):
        self.members = members

    def __len__(self) -> int:
        return sum(len(m.datasets["train"]) for m in self.members)

    def __getitem__(self, key: tuple[int, ItemKey]) -> dict[str, Any]:
        member, item = key
        return self.members[member].datasets["train"][item]


class PooledBatchSampler(Sampler):
    """Batches of a pooled training set: each batch from one site (image sizes differ between sites).

    Each member contributes the same batches, with the same training masks, as its own loader
    forms in that round and epoch; the batches of all members are then interleaved in an order
    fixed by (seed, pool name, round, epoch).
    """

    def __init__(self, members: list[SiteDataModule], *, seed: int, name: str):
        self.members = members
        self.seed = seed
        self.name = name
        self.round = 1
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch of a fit."""
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(-(-len(m.datasets["train"]) // m.batch_size) for m in self.members)

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, int, int]]]]:
        batches = []
        for index, member in enumerate(self.members):
            order = round_order(
                len(member.datasets["train"]),
                seed=self.seed,
                site=member.name,
                rnd=self.round,
                epoch=self.epoch,
            )
            for start in range(0, len(order), member.batch_size):
                chunk = order[start : start + member.batch_size]
                batches.append([(index, (i, self.round, self.epoch)) for i in chunk])
        generator = torch.Generator().manual_seed(
            stable_seed(self.seed, self.name, "pool-order", self.round, self.epoch)
        )
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[b]


class PooledDataModule:
    """Training loader over several sites' training data pooled (Centralized, Transfer-Site).

    Args:
        members: the sites whose training splits are pooled (already built; set up here).
        seed: the run's seed.
        name: the pool's name (keys its batch order).
        num_workers: loader worker processes.
        persistent_workers: keep the workers alive across fits and rounds (when ``num_workers`` > 0).
        pin_memory: page-locked batches (None: when CUDA is available).
    """

    def __init__(
        self,
        members: list[SiteDataModule],
        *,
        seed: int,
        name: str,
        num_workers: int = 0,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
    ):
        if not members:
            raise ValueError("a pool needs at least one site")
        for member in members:
            member.setup()
        self.members = members
        self.name = name
        self.sampler = PooledBatchSampler(members, seed=seed, name=name)
        self.loader = DataLoader(
            PooledDataset(members),
            batch_sampler=self.sampler,
            num_workers=num_workers,
            persistent_workers=persistent_workers and num_workers > 0,
            pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        )

    @property
    def num_train_slices(self) -> int:
        """Training slices of all members together."""
        return sum(m.num_train_slices for m in self.members)

    def set_round(self, rnd: int) -> None:
        """Key the order and masks of the coming fit to round ``rnd``."""
        self.sampler.round = rnd

    def train_dataloader(self) -> DataLoader:
        """Site-homogeneous batches of the pooled training slices."""
        return self.loader
