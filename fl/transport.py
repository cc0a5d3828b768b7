"""How the round loop reaches the sites. :class:`InProcess` holds every :class:`~fl.site.Site` in this
process and passes payloads and replies by reference; ``fl/distributed.py`` spreads the sites over
processes and gathers what they return; ``fl/flower/transport.py`` sends every step as a Flower message.

A transport answers four requests of the loop, each for every site and in site order: ``prepare``
(an algorithm's pre-round exchange), ``fit`` (the local round), ``validate`` (the new global tensors
loaded, keep the best round) and ``test`` (the best model on the test split). It also hands the
checkpoint the sites' states, where it holds them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from fl.aggregation import TensorDict
from fl.algorithms.base import Payload, Reply
from fl.site import FitResult, Site


class Transport(ABC):
    """The interface the round loop uses; :class:`InProcess` implements it with local sites."""

    writer = True  # whether this process writes the run's outputs
    holds_sites = True  # whether site states (and best models) are checkpointed by the server side

    @property
    @abstractmethod
    def site_names(self) -> list[str]:
        """Every site of the federation, in config order."""

    @abstractmethod
    def prepare(self, rnd: int, payloads: dict[str, Payload]) -> dict[str, Reply]:
        """The prepare answers of the requested sites."""

    @abstractmethod
    def fit(
        self, rnd: int, payloads: dict[str, Payload], epochs: int, lr: float, skip: bool
    ) -> dict[str, FitResult]:
        """Every site's local round."""

    @abstractmethod
    def validate(self, rnd: int, global_state: TensorDict) -> dict[str, dict[str, Any]]:
        """Every site's validation summary after loading ``global_state``; each keeps its best round.
        A transport that may show the server a site's images adds ``shown``, one validation slice
        (:meth:`Site.figure_slice`) for TensorBoard; Flower's does not (images stay at the site)."""

    @abstractmethod
    def test(self) -> dict[str, dict[str, Any]]:
        """Every site's test results (:meth:`Site.test`), with ``best`` when the site's best model is here."""

    def traffic(self) -> dict[str, dict[str, int]] | None:
        """Measured bytes per site of the last round's messages, or None to count payload tensors."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """``{"sites": {name: site state}, "best": {name: best round}}`` of every site held here."""
        return {"sites": {}, "best": {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027  (nothing held: nothing to restore)
        """Restore :meth:`state_dict`."""


class InProcess(Transport):
    """Every site in this process, called one after another in site order."""

    connects_peers = True  # give every client the other sites' training batches (Client.connect)

    def __init__(self, sites: list[Site]):
        self.sites = sites
        if self.connects_peers:
            peers = {s.name: s.data.foreign_batches for s in sites}
            for site in sites:
                site.client.connect(peers)

    @property
    def site_names(self) -> list[str]:
        return [s.name for s in self.sites]

    def owned(self) -> list[Site]:
        """The sites this process runs (all of them here)."""
        return self.sites

    def site(self, name: str) -> Site:
        """The site called ``name``."""
        return next(s for s in self.sites if s.name == name)

    def gather(self, local: dict[str, Any]) -> dict[str, Any]:
        """Per-site results computed here -> every site's, in site order (identity in one process)."""
        return local

    def prepare(self, rnd: int, payloads: dict[str, Payload]) -> dict[str, Reply]:
        local = {s.name: s.prepare(rnd, payloads[s.name]) for s in self.owned() if s.name in payloads}
        return self.gather(local)

    def fit(
        self, rnd: int, payloads: dict[str, Payload], epochs: int, lr: float, skip: bool
    ) -> dict[str, FitResult]:
        return self.gather(
            {s.name: s.fit_or_skip(rnd, payloads[s.name], epochs, lr, skip) for s in self.owned()}
        )

    def validate(self, rnd: int, global_state: TensorDict) -> dict[str, dict[str, Any]]:
        local = {}
        for site in self.owned():
            val, improved = site.validate(rnd, global_state)
            local[site.name] = {"val": val, "best": site.best() if improved else None, "shown": site.shown}
        merged = self.gather(local)
        for name, result in merged.items():
            if result["best"] is not None:  # keep every process's copy of the best rounds in step
                self.site(name).load_best(result["best"])
        return {name: {**result["val"], "shown": result["shown"]} for name, result in merged.items()}

    def test(self) -> dict[str, dict[str, Any]]:
        merged = self.gather({s.name: s.test() for s in self.owned()})
        for name, result in merged.items():
            result["best"] = self.site(name).best()
        return merged

    def state_dict(self) -> dict[str, Any]:
        sites = self.gather({s.name: s.state_dict() for s in self.owned()})
        return {"sites": sites, "best": {s.name: s.best() for s in self.sites}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for site in self.sites:
            try:
                site.load_state_dict(state["sites"][site.name])
                site.load_best(state["best"][site.name])
            except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
                lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [
                    type(err).__name__
                ]
                detail = next((ln for ln in lines if "size mismatch" in ln or "key" in ln.lower()), lines[-1])
                raise ValueError(f"site {site.name} does not fit the model ({detail})") from None
