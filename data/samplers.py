"""The order of a site's training samples, keyed by (seed, site, round, epoch), and how data-parallel
ranks share its batches and its evaluation volumes."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from data.samples import SliceDataset
from utils.seeding import stable_seed


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
