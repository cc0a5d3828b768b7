"""The server side of the Flower app: the round loop's transport, where every step is a message.

Per round ``t`` each site gets two messages: ``train`` (the round's payload: the global shared
tensors, the algorithm's extra tensors and values; the reply carries the site's shared tensors, its
extra tensors and values, its training loss and status) and, after aggregation, ``evaluate`` with
``split: val`` (the new global tensors; the site validates, keeps its best round and replies with
its metrics). After the last round, ``evaluate`` with ``split: test`` tests every site's best
model. Before the first round every SuperNode names its site (``query.identify``).
``fl/flower/wire.py`` lists the records.

The bytes of a site's round in ``metrics.csv`` are the serialised sizes of its two exchanges, and
``traffic.csv`` lists every message. Sites keep their own state (decoders, optimiser, best model)
between messages, on their own disks; the server's checkpoint holds the global tensors and the
algorithm's server state.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fl.aggregation import TensorDict
from fl.algorithms.base import Payload, Reply
from fl.flower.nodes import NoReply, SiteDirectory, send_and_wait
from fl.flower.wire import (
    EVALUATE,
    TRAIN,
    config_of,
    content,
    message_bytes,
    metrics_of,
    payload_content,
    reply_of,
    tensor_stats,
)
from fl.site import FitResult
from fl.transport import Transport
from utils.errors import UserError
from utils.io import MiB, atomic_write_text, open_append, read_text

TRAFFIC_COLUMNS = ("round", "site", "node", "message", "direction", "bytes", "tensors", "tensor_bytes")


class TrafficCSV:
    """``traffic.csv``: one row per message, with its serialised size and the tensors it carried."""

    def __init__(self, path: Path, keep_rounds: int):
        self.path = path
        rows = []
        if path.exists():
            text = read_text(path, "traffic", 1024 * MiB, line_limit=64 * 1024)
            try:
                rows = [r for r in csv.DictReader(io.StringIO(text)) if int(r["round"]) <= keep_rounds]
            except (csv.Error, TypeError, ValueError) as err:
                raise UserError(f"{path}: not this run's traffic log ({err}); move it aside") from None
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=TRAFFIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buffer.getvalue())

    def write(self, **row: Any) -> None:
        """Append one row."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([row.get(c, "") for c in TRAFFIC_COLUMNS])
        with open_append(self.path, "traffic") as handle:
            handle.write(buffer.getvalue())


def no_reply(err: NoReply, kind: str, rnd: int) -> str:
    """The line that stops the run when sites did not reply to the ``kind`` message of round ``rnd``
    (0: the test after the last round)."""
    one = len(err.missing) == 1
    sites = f"site {err.missing[0]}" if one else f"sites {', '.join(map(str, err.missing))}"
    step = f"round {rnd}" if rnd else "the final test"
    nodes = "that site's SuperNode" if one else "those sites' SuperNodes"
    return (
        f"{sites}: no reply to the {kind} message of {step} within {err.timeout:g} s (reply-wait); "
        f"the server keeps its last completed round: restart {nodes} (or allow a longer reply-wait), "
        "then continue with resume=true"
    )


class FlowerTransport(Transport):
    """Reaches every site through a Flower :class:`Grid`.

    Args:
        grid: the Flower grid (the SuperLink's, or :class:`deploy.local.LocalGrid`).
        sites: the site names, in config order.
        site_config: site -> the federation config restricted to it (plain data), sent once per node.
        name: the run's name (a site's run directory is ``<output-dir>/<name>/<site>``).
        directory: the nodes asked to name their sites.
        poll_interval: seconds between polls for replies.
        reply_wait: seconds to wait for every site's reply to a message; then the run stops, naming
            the sites still without one (the checkpoint keeps the last completed round).
        fresh: the run starts at round 1 (the sites start fresh; ``overwrite`` lets them replace a run).
    """

    holds_sites = False

    def __init__(
        self,
        grid: Grid,
        sites: list[str],
        *,
        site_config: Callable[[str], dict[str, Any]],
        name: str,
        directory: SiteDirectory,
        poll_interval: float = 0.2,
        reply_wait: float = 86400.0,
        overwrite: bool = False,
        log: Callable[[str], None] = print,
    ):
        self.grid, self.sites, self.site_config, self.name = grid, sites, site_config, name
        self.directory, self.poll_interval, self.reply_wait = directory, poll_interval, reply_wait
        self.overwrite, self.log = overwrite, log
        self.nodes: dict[str, int] = {}  # site -> node id
        self.configured: set[int] = set()  # nodes that were sent the run's config
        self.traffic_log: TrafficCSV | None = None
        self.fresh = True
        self._bytes: dict[str, dict[str, int]] = {}  # per site: sizes of the round's exchanges so far

    @property
    def site_names(self) -> list[str]:
        return list(self.sites)

    # -- nodes and messages --------------------------------------------------------------------
    def connect(self) -> dict[str, int]:
        """Map every site to its connected SuperNode (waiting for missing ones)."""
        self.nodes = self.directory.connect(self.sites)
        for question, answer in self.directory.exchanged:
            node = question.metadata.dst_node_id
            self._account(0, self.directory.named.get(node, ""), "identify", question, answer)
        self.directory.exchanged.clear()
        return self.nodes

    def _account(self, rnd: int, site: str, kind: str, question: Message, answer: Message) -> dict[str, int]:
        """Log both messages of an exchange in ``traffic.csv``; their sizes as seen from the site."""
        sizes = {"bytes_received": message_bytes(question), "bytes_sent": message_bytes(answer)}
        if self.traffic_log is not None:
            node = question.metadata.dst_node_id
            for direction, message, size in (
                ("to_site", question, sizes["bytes_received"]),
                ("from_site", answer, sizes["bytes_sent"]),
            ):
                count, raw = tensor_stats(message)
                self.traffic_log.write(
                    round=rnd, site=site, node=node, message=kind, direction=direction,
                    bytes=size, tensors=count, tensor_bytes=raw,
                )  # fmt: skip
        return sizes

    def _exchange(self, kind: str, rnd: int, contents: Mapping[str, RecordDict]) -> dict[str, RecordDict]:
        """Send each site its content, return each site's reply content; a site's failure is a UserError."""
        self.connect()
        messages = {
            site: Message(c, dst_node_id=self.nodes[site], message_type=kind, group_id=str(rnd))
            for site, c in contents.items()
        }
        try:
            replies = send_and_wait(self.grid, messages, self.poll_interval, self.reply_wait)
        except NoReply as err:
            raise UserError(no_reply(err, kind, rnd)) from None
        out = {}
        for site in contents:
            reply = replies[site]
            sizes = self._account(rnd, site, kind, messages[site], reply)
            totals = self._bytes.setdefault(site, {"bytes_sent": 0, "bytes_received": 0})
            for key, size in sizes.items():
                totals[key] += size
            if reply.has_error():
                raise UserError(
                    f"site {site}: no answer to the {kind} message of round {rnd}: {reply.error.reason}"
                )
            status = config_of(reply.content, "status")
            if "error" in status:
                error = str(status["error"])
                raise UserError(error if error.startswith(f"site {site}") else f"site {site}: {error}")
            self.configured.add(self.nodes[site])
            out[site] = reply.content
        return out

    def _configs(self, site: str, step: dict[str, Any]) -> dict[str, dict[str, Any]]:
        configs: dict[str, dict[str, Any]] = {"round": {"name": self.name, **step}}
        if self.nodes[site] not in self.configured:
            configs["config"] = {"json": json.dumps(self.site_config(site))}
        return configs

    def _content(self, site: str, step: dict[str, Any], arrays: Mapping[str, TensorDict]) -> RecordDict:
        return content(configs=self._configs(site, step), arrays=arrays)

    # -- the loop's requests -------------------------------------------------------------------
    def prepare(self, rnd: int, payloads: dict[str, Payload]) -> dict[str, Reply]:
        raise UserError("this algorithm's pre-round exchange between sites is not available on Flower")

    def fit(
        self, rnd: int, payloads: dict[str, Payload], epochs: int, lr: float, skip: bool
    ) -> dict[str, FitResult]:
        self._bytes = {}
        self.connect()
        step: dict[str, Any] = {"round": rnd, "step": "train"}
        if self.fresh:
            step |= {"fresh": rnd == 1, "overwrite": self.overwrite}
        contents = {site: payload_content(payloads[site], self._configs(site, step)) for site in self.sites}
        replies = self._exchange(TRAIN, rnd, contents)
        self.fresh = False
        results = {}
        for site in self.sites:  # config order, as in one process: aggregation sums in this order
            reply = replies[site]
            status = str(config_of(reply, "status").get("train", "ok"))
            train = metrics_of(reply, "train") or {}
            result = FitResult(status, float(train.get("loss", math.nan)), int(train.get("train_slices", 1)))
            result.steps = int(train.get("steps", 0))
            result.values = {k: float(v) for k, v in (metrics_of(reply, "train_values") or {}).items()}
            if status == "ok":
                result.reply = reply_of(reply)
            results[site] = result
        return results

    def validate(self, rnd: int, global_state: TensorDict) -> dict[str, dict[str, float]]:
        step = {"round": rnd, "step": "validate"}
        replies = self._exchange(
            EVALUATE, rnd, {s: self._content(s, step, {"global": global_state}) for s in self.sites}
        )
        out = {}
        for site in self.sites:
            val = metrics_of(replies[site], "val")
            if val is None:
                raise UserError(f"site {site}: sent no validation metrics for round {rnd}")
            out[site] = val
        return out

    def traffic(self) -> dict[str, dict[str, int]] | None:
        """The serialised sizes of each site's exchanges of the round (train and validate)."""
        return {site: dict(sizes) for site, sizes in self._bytes.items()}

    def test(self) -> dict[str, dict[str, Any]]:
        self._bytes = {}
        step: dict[str, Any] = {"round": 0, "step": "test"}
        if self.fresh:  # a run resumed after its last round: the sites continue from their state
            step |= {"fresh": False}
        replies = self._exchange(EVALUATE, 0, {s: self._content(s, step, {}) for s in self.sites})
        out = {}
        for site in self.sites:
            reply = replies[site]
            best = metrics_of(reply, "best") or {}
            model, zero_filled = metrics_of(reply, "test_model"), metrics_of(reply, "test_zero_filled")
            if model is None or zero_filled is None:
                raise UserError(f"site {site}: sent no test metrics")
            out[site] = {
                "best_round": int(best.get("round", 0)),
                "model": model,
                "zero_filled": zero_filled,
                **self._bytes[site],
            }
        return out
