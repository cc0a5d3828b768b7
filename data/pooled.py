"""Several sites' training data pooled into one loader (the Centralized and Transfer-Site references):
batches each from one site, with the masks and batches each site's own loader forms, interleaved in an
order keyed by (seed, pool name, round, epoch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data.samplers import round_order
from data.samples import ItemKey
from utils.seeding import stable_seed

if TYPE_CHECKING:
    from data.site import SiteDataModule


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
