"""A federated round, written once for every transport.

Round ``t``: the sites the algorithm asks first answer its pre-round request (FL-MRCM's target
features); every site gets its payload and trains (``fl.local_epochs``, in the phases its client
half plans); the server aggregates the replies of the sites that trained; every site loads the new
global tensors, validates and keeps its best round. The bytes each site received and sent are the
tensors of its payload and reply (or the measured message sizes, where the transport measures them).
A site whose loss or weights become non-finite stops the run (``fl.on_site_failure: abort``), or
is restored and left out of the round's aggregation (``skip``).

:class:`Federation` is what :class:`fl.loop.RunLoop` runs for every federated algorithm; the
non-federated references (``fl/references.py``) offer the loop the same four methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fl.algorithms.base import Payload, Reply, Server
from fl.site import FitResult
from fl.transport import Transport
from utils.errors import TrainingFailure

Summary = dict[str, dict[str, Any]]  # site -> loss, status, validation metrics, bytes


@dataclass
class TrainedRound:
    """What the training half of a round leaves: each site's payload and fit result, and the answers
    to the algorithm's pre-round requests."""

    payloads: dict[str, Payload]
    results: dict[str, FitResult]
    prepared: dict[str, Reply]

    def traffic(self) -> dict[str, dict[str, int]]:
        """Bytes each site received (its payload) and sent (its reply and any prepare answer)."""
        out = {}
        for site, payload in self.payloads.items():
            reply = self.results[site].reply
            sent = self.prepared[site].nbytes if site in self.prepared else 0
            if reply is not None:
                sent += reply.nbytes
            out[site] = {"bytes_sent": sent, "bytes_received": payload.nbytes}
        return out


class Federation:
    """The federated rounds of one run: a server half, the sites behind a transport, a schedule.

    Args:
        server: the algorithm's server half, set up with the initial model.
        transport: how the sites are reached.
        local_epochs: ``fl.local_epochs``.
        lr: learning rate of a round (1-based).
        client_weights: ``uniform`` (1/K) or ``samples`` (training slices).
        on_site_failure: ``abort`` or ``skip``.
        log: where notes about skipped sites go.
    """

    def __init__(
        self,
        server: Server,
        transport: Transport,
        *,
        local_epochs: int,
        lr: Callable[[int], float],
        client_weights: str = "uniform",
        on_site_failure: str = "abort",
        log: Callable[[str], None] = print,
    ):
        self.server, self.transport = server, transport
        self.local_epochs, self.lr = local_epochs, lr
        self.client_weights, self.on_site_failure = client_weights, on_site_failure
        self.log = log
        self.completed = 0  # the last round whose checkpoint was written (set by the loop)

    @property
    def site_names(self) -> list[str]:
        """The sites, in config order."""
        return self.transport.site_names

    def describe(self, total_tensors: int) -> str:
        """What is shared, for the run's first line."""
        return f"shared {len(self.server.global_state)} of {total_tensors} tensors"

    def round(self, rnd: int) -> Summary:
        """One communication round; per site its training loss, status, traffic and validation metrics."""
        trained = self.train(rnd)
        validated = self.transport.validate(rnd, self.server.global_state)
        traffic = self.transport.traffic() or trained.traffic()
        return {
            site: {
                "loss": trained.results[site].loss,
                "status": trained.results[site].status,
                "steps": trained.results[site].steps,
                "train": trained.results[site].values,
                **validated[site],
                **traffic[site],
            }
            for site in self.site_names
        }

    def train(self, rnd: int) -> TrainedRound:
        """The training half of a round: the algorithm's pre-round exchange, every site's local fit from
        its payload, and the aggregation of the replies of the sites that trained."""
        server, transport = self.server, self.transport
        prepared = {}
        requests = server.prepare_requests(rnd)
        if requests:
            prepared = transport.prepare(rnd, {s: Payload(server.global_state) for s in requests})
            server.receive_prepared(rnd, prepared)
        payloads = {site: server.payload(site, rnd) for site in self.site_names}
        skip = self.on_site_failure == "skip"
        results = transport.fit(rnd, payloads, self.local_epochs, self.lr(rnd), skip)
        self._stop_on_divergence(rnd, results)
        replies = {site: r.reply for site, r in results.items() if r.status == "ok"}
        for site, r in results.items():
            if r.status != "ok":
                self.log(f"site {site} diverged in round {rnd}: {r.status.partition(': ')[2]}; "
                         "left out of this round's aggregation, retried next round")  # fmt: skip
        if replies:
            samples = self.client_weights == "samples"
            weights = {s: float(results[s].train_slices) if samples else 1.0 for s in replies}
            server.aggregate(rnd, replies, weights)
        return TrainedRound(payloads, results, prepared)

    def _stop_on_divergence(self, rnd: int, results: dict[str, FitResult]) -> None:
        for site, result in results.items():
            if result.status.startswith("diverged"):
                kept = (
                    f"checkpoints/last.ckpt (round {self.completed}) is kept"
                    if self.completed
                    else "no round had completed"
                )
                raise TrainingFailure(
                    f"site {site} diverged in round {rnd}: {result.status.partition(': ')[2]}; {kept} "
                    "(with fl.on_site_failure=skip the site would sit this round out)"
                )

    def test(self) -> dict[str, dict[str, Any]]:
        """Every site's best model on its test split."""
        return self.transport.test()

    def state_dict(self) -> dict[str, Any]:
        """The server's state (global tensors included) and every site's held here."""
        server = self.server.state_dict()
        return {"global": server.pop("global"), "server": server, **self.transport.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.server.load_state_dict({**state["server"], "global": state["global"]})
        self.transport.load_state_dict(state)
