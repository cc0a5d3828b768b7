"""One site's data: a source, its undersampling masks and the train/val/test loaders.

Randomness is keyed, never drawn from global state: the training order comes from (seed, site, round,
epoch), redrawn training masks from (seed, site, round, epoch, volume, slice), and validation/test masks
from (seed, site, volume, slice), so a run is reproducible across processes, worker counts and resumes.
The samples come from ``data/samples.py``, the training order from ``data/samplers.py``;
``data/pooled.py`` pools several sites' training data (its names are importable from here too).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from data import masks
from data.samplers import RoundSampler, round_order, volume_shard
from data.samples import ItemKey, SampleCache, SliceDataset, constant_sample, sample_problem
from data.sources import SourceContext, build_source
from data.transforms import ReconTransform
from utils.seeding import stable_seed

__all__ = [
    "ItemKey",
    "RoundSampler",
    "SampleCache",
    "SiteDataModule",
    "SliceDataset",
    "constant_sample",
    "round_order",
    "sample_problem",
    "volume_shard",
]


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
