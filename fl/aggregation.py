"""Aggregation kernels: the weighted average of the sites' shared tensors, and its in-place variant."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

TensorDict = dict[str, Tensor]


def nbytes(tensors: Iterable[Tensor]) -> int:
    """Bytes a collection of tensors occupies on the wire (numel x element size, no framing)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def _total(updates: Mapping[str, TensorDict], weights: Mapping[str, float]) -> float:
    total = sum(weights[site] for site in updates)
    if total <= 0:
        raise ValueError("aggregation weights must sum to a positive number")
    return total


def weighted_average(updates: Mapping[str, TensorDict], weights: Mapping[str, float]) -> TensorDict:
    """Average the sites' tensors name by name with the given (normalised here) weights.

    Floating tensors are averaged in float64 and cast back; integer buffers (e.g. BatchNorm's
    ``num_batches_tracked``) take the weighted average rounded to the nearest integer.
    """
    if not updates:
        return {}
    total = _total(updates, weights)
    first = next(iter(updates.values()))
    averaged: TensorDict = {}
    for name, reference in first.items():
        acc = None
        for site, tensors in updates.items():
            term = tensors[name].to(torch.float64) * (weights[site] / total)
            acc = term if acc is None else acc.add_(term)
        averaged[name] = (
            acc.to(reference.dtype) if reference.is_floating_point() else acc.round().to(reference.dtype)
        )
    return averaged


class FlatAverager:
    """:func:`weighted_average` in place on buffers kept from round to round: the same numbers, bit for
    bit, without allocating float64 temporaries for every tensor of every site.

    The floating tensors are averaged into one flat float64 accumulator, tensor by tensor (so each
    tensor's slice of the accumulator stays in cache while every site's term is added to it), each
    site's term scaled in a float64 scratch buffer of the largest tensor's size: exactly the
    operations ``weighted_average`` applies, in the same order. Integer buffers take
    ``weighted_average``'s own path. The buffers are reallocated only when the shared tensors change.
    """

    def __init__(self) -> None:
        self._accumulator: Tensor | None = None
        self._term: Tensor | None = None

    def _buffers(self, numel: int, largest: int, device: torch.device) -> tuple[Tensor, Tensor]:
        acc, term = self._accumulator, self._term
        if acc is None or acc.numel() != numel or term.numel() != largest or acc.device != device:
            self._accumulator = self._term = None  # release the old pair first
            self._accumulator = torch.empty(numel, dtype=torch.float64, device=device)
            self._term = torch.empty(largest, dtype=torch.float64, device=device)
        return self._accumulator, self._term

    def __call__(self, updates: Mapping[str, TensorDict], weights: Mapping[str, float]) -> TensorDict:
        """The weighted average of ``updates``, name by name, as :func:`weighted_average` computes it."""
        if not updates:
            return {}
        total = _total(updates, weights)
        first = next(iter(updates.values()))
        names = [n for n, t in first.items() if t.is_floating_point()]
        others = [n for n, t in first.items() if not t.is_floating_point()]
        averaged: TensorDict = {}
        if names:
            sizes = [first[n].numel() for n in names]
            acc, term = self._buffers(sum(sizes), max(sizes), first[names[0]].device)
            factors = [weights[site] / total for site in updates]
            for name, piece in zip(names, acc.split(sizes)):
                scratch = term[: piece.numel()]
                for index, tensors in enumerate(updates.values()):
                    values = tensors[name].reshape(-1)
                    if index == 0:
                        piece.copy_(values).mul_(factors[0])
                    else:
                        scratch.copy_(values).mul_(factors[index])
                        piece.add_(scratch)
                averaged[name] = piece.view(first[name].shape).to(first[name].dtype)
        if others:
            rest = {site: {n: tensors[n] for n in others} for site, tensors in updates.items()}
            averaged.update(weighted_average(rest, weights))
        return {n: averaged[n] for n in first}
