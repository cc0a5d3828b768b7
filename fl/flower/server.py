"""The server side of the Flower app: the round loop over messages, with the project's strategies.

One round ``t`` is one exchange with every site: the ``train`` message carries the global shared
tensors after round ``t - 1`` and what the strategy sends that site (:meth:`Strategy.downlink`); the
site first validates round ``t - 1`` with them (its fitted model with the new global tensors loaded,
as the in-process loop does after aggregation), then trains round ``t`` from them, and replies with
its shared tensors, :meth:`Strategy.uplink`, its training loss and the validation metrics. The server
then completes round ``t - 1`` (metrics rows, checkpoint) and aggregates round ``t``. A last
``evaluate`` exchange validates the last round and tests every site's best model. Before the first
round every SuperNode names its site (``query.identify``).

Outputs in ``<output_dir>/<name>/`` on the server: ``config.yaml``, ``metrics.csv`` (the in-process
columns; bytes are real message sizes), ``traffic.csv`` (every message), ``tb/``,
``checkpoints/global.ckpt`` (the global shared tensors and the server's strategy state after the last
completed round; ``resume=true`` continues from it), ``results.json``, ``results.md`` and
``figures/val_psnr.png``. Each site writes its own best model, figures and results at the site.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fl.federation import Federation, lr_at
from fl.flower.nodes import SiteDirectory, describe, send_and_wait
from fl.flower.wire import (
    FINISH,
    TRAIN,
    arrays_of,
    config_of,
    content,
    message_bytes,
    metrics_of,
    tensor_stats,
)
from fl.strategies import ALGORITHMS, TensorDict
from utils.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from utils.config import Config, config_differences, save_config, validate_config
from utils.errors import TrainingFailure, UserError
from utils.figures import metric_curves
from utils.metrics import METRICS
from utils.run_log import MetricsCSV, TensorBoardLog
from utils.seeding import stable_seed

CHECKPOINT_FORMAT = 1
TRAFFIC_COLUMNS = ("round", "site", "node", "message", "direction", "bytes", "tensors", "tensor_bytes")


def check_separable(config: Config) -> None:
    """Refuse, in one line naming ``fl.algorithm``, an algorithm whose sites cannot be separate processes."""
    reason = ALGORITHMS[config.fl.algorithm].separate_sites_unsupported
    if reason:
        raise UserError(
            f"fl.algorithm: {config.fl.algorithm} cannot run with every site in its own process: {reason}"
        )


class TrafficCSV:
    """``traffic.csv``: one row per message, with its serialised size and the tensors it carried."""

    def __init__(self, path: Path, keep_rounds: int):
        self.path = path
        rows = []
        if path.exists():
            rows = [
                r for r in csv.DictReader(io.StringIO(path.read_text())) if int(r["round"]) <= keep_rounds
            ]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=TRAFFIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buffer.getvalue())

    def write(self, **row: Any) -> None:
        """Append one row."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([row.get(c, "") for c in TRAFFIC_COLUMNS])
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())


class FlowerServer:
    """Runs a federation over a Flower :class:`Grid` and writes the server's outputs.

    Args:
        grid: the Flower grid (the SuperLink's, or :class:`fl.flower.local.LocalGrid`).
        config: the federation config.
        resume: continue after the round of ``checkpoints/global.ckpt`` (sites continue from theirs).
        overwrite: replace an existing run of the same name (here and at the sites).
        poll_interval: seconds between polls for replies.
        node_wait: seconds to wait for every site's SuperNode to connect.
        log: where progress lines go.
        directory: the nodes already asked to name their sites (default: a new one).
    """

    def __init__(
        self,
        grid: Grid,
        config: Config,
        *,
        resume: bool = False,
        overwrite: bool = False,
        poll_interval: float = 0.2,
        node_wait: float = 600.0,
        log: Callable[[str], None] = print,
        directory: SiteDirectory | None = None,
    ):
        check_separable(config)
        self.grid = grid
        self.config = config
        self.resume, self.overwrite = resume, overwrite
        self.poll_interval, self.node_wait = poll_interval, node_wait
        self.log = log
        self.fed = Federation(config, log=log)  # the strategy, the model factory, the results writer
        self.strategy = self.fed.strategy
        self.run_dir = config.run_dir
        self.sites = [s.name for s in config.sites]
        self.directory = directory or SiteDirectory(grid, poll_interval, node_wait, log)
        self.nodes: dict[str, int] = {}  # site -> node id
        self.configured: set[int] = set()  # nodes that were sent the run's config
        self.global_state: TensorDict = {}
        self.completed = 0
        self.history: dict[str, list[float]] = {s: [] for s in self.sites}
        self.traffic: TrafficCSV | None = None
        self.last_bytes: dict[Any, dict[str, int]] = {}  # per site: sizes of its last exchange
        self._mark = 0.0

    # -- set-up --------------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        checkpoint = self.run_dir / "checkpoints" / "global.ckpt"
        holds = (self.run_dir / "metrics.csv").exists() or (self.run_dir / "checkpoints").exists()
        if self.resume:
            if checkpoint.exists():
                self._load(checkpoint)
                self.log(f"resuming {self.run_dir} after round {self.completed} of {self.config.fl.rounds}")
            else:
                self.log(f"{self.run_dir}: no completed round to resume from; starting at round 1")
        elif holds:
            if not self.overwrite:
                raise UserError(
                    f"{self.run_dir} already holds a run: continue it with resume=true, replace it with "
                    "overwrite=true, or choose another name=..."
                )
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.run_dir / "config.yaml")

    def _initial_global(self) -> None:
        """The shared tensors of the initial model, built exactly as the in-process federation builds it."""
        torch.manual_seed(stable_seed(self.config.seed, "init"))
        model = self.fed._new_module().model
        state = model.state_dict()
        shared = self.strategy.shared_names(list(state), model)
        self.global_state = {n: state[n].detach().clone().cpu() for n in shared}
        self.total_tensors = len(state)

    def _site_config_json(self, site: str) -> str:
        data = self.config.to_dict()
        data["sites"] = [s for s in data["sites"] if s["name"] == site]
        data["paths"] = {}
        return json.dumps(data)

    # -- nodes and messages --------------------------------------------------------------------
    def _connect(self) -> None:
        """Map every site to its connected SuperNode (waiting for missing ones)."""
        self.nodes = self.directory.connect(self.sites)
        for question, answer in self.directory.exchanged:
            node = question.metadata.dst_node_id
            self._account(0, self.directory.named.get(node, ""), "identify", question, answer)
        self.directory.exchanged.clear()

    def _account(self, rnd: int, site: str, kind: str, question: Message, answer: Message) -> dict[str, int]:
        """Log both messages of an exchange in ``traffic.csv``; their sizes as seen from the site."""
        sizes = {"bytes_received": message_bytes(question), "bytes_sent": message_bytes(answer)}
        if self.traffic is not None:
            node = question.metadata.dst_node_id
            for direction, message, size in (
                ("to_site", question, sizes["bytes_received"]),
                ("from_site", answer, sizes["bytes_sent"]),
            ):
                count, raw = tensor_stats(message)
                self.traffic.write(
                    round=rnd, site=site, node=node, message=kind, direction=direction,
                    bytes=size, tensors=count, tensor_bytes=raw,
                )  # fmt: skip
        return sizes

    def _exchange(self, kind: str, rnd: int, contents: Mapping[str, RecordDict]) -> dict[str, RecordDict]:
        """Send each site its content, return each site's reply content; a site's failure is a UserError."""
        messages = {
            site: Message(c, dst_node_id=self.nodes[site], message_type=kind, group_id=str(rnd))
            for site, c in contents.items()
        }
        replies = send_and_wait(self.grid, messages, self.poll_interval)
        self.last_bytes = {
            site: self._account(rnd, site, kind, messages[site], replies[site]) for site in contents
        }
        out = {}
        for site in contents:
            reply = replies[site]
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

    def _step(self, rnd: int, *, validate: bool) -> dict[str, Any]:
        step = {"round": rnd, "validate": validate, "name": self.config.name}
        if rnd == 1 and not validate and self.completed == 0:
            step |= {"fresh": True, "overwrite": self.overwrite or self.resume}
        return step

    def _contents(self, rnd: int, *, validate: bool, downlink: bool) -> dict[str, RecordDict]:
        self._connect()
        out = {}
        for site in self.sites:
            configs: dict[str, dict[str, Any]] = {"round": self._step(rnd, validate=validate)}
            if self.nodes[site] not in self.configured:
                configs["config"] = {"json": self._site_config_json(site)}
            arrays = {"global": self.global_state}
            if downlink:
                arrays["downlink"] = self.strategy.downlink(site, rnd)
            out[site] = content(configs=configs, arrays=arrays)
        return out

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Connect the sites, run every remaining round, test, and write the server's outputs."""
        cfg = self.config
        self._initial_global()
        self._prepare_run_dir()
        self.traffic = TrafficCSV(self.run_dir / "traffic.csv", keep_rounds=self.completed)
        metrics = MetricsCSV(self.run_dir / "metrics.csv")
        metrics.truncate_to(self.completed)
        tb = TensorBoardLog(self.run_dir / "tb", purge_step=self.completed + 1)
        start = time.perf_counter()
        self._connect()
        self.log(
            f"{cfg.fl.algorithm} on Flower: {len(self.sites)} sites ({describe(self.nodes)}, named in "
            f"{time.perf_counter() - start:.0f} s), {cfg.fl.rounds} rounds x {cfg.fl.local_epochs} local "
            f"epochs; shared {len(self.global_state)} of {self.total_tensors} tensors; "
            f"outputs in {self.run_dir}"
        )
        first = self.completed + 1
        pending: dict[str, dict[str, Any]] = {}
        start = self._mark = time.perf_counter()
        try:
            for rnd in range(first, cfg.fl.rounds + 1):
                replies = self._exchange(TRAIN, rnd, self._contents(rnd, validate=rnd > first, downlink=True))
                if rnd > first:
                    self._complete(rnd - 1, replies, pending, metrics, tb, start, first)
                pending = self._aggregate(rnd, replies)
            validate = cfg.fl.rounds >= first
            replies = self._exchange(
                FINISH, cfg.fl.rounds, self._contents(cfg.fl.rounds, validate=validate, downlink=False)
            )
            if validate:
                self._complete(cfg.fl.rounds, replies, pending, metrics, tb, start, first)
            results = self._results(replies, metrics)
        finally:
            tb.close()
        self.fed.write_results(results)
        if any(self.history.values()):
            metric_curves(
                self.run_dir / "figures" / "val_psnr.png", range(1, self.completed + 1), self.history
            )
        return results

    def _aggregate(self, rnd: int, replies: Mapping[str, RecordDict]) -> dict[str, dict[str, Any]]:
        """Adopt the sites' uplinks, aggregate their shared tensors; the train rows of round ``rnd``."""
        rows, updates, weights = {}, {}, {}
        for site in self.sites:  # config order, as in-process: aggregation sums in this order
            reply = replies[site]
            status = str(config_of(reply, "status").get("train", "ok"))
            train = metrics_of(reply, "train") or {}
            rows[site] = {
                "loss": float(train.get("loss", math.nan)),
                "status": status,
                **self.last_bytes[site],
            }
            if status.startswith("diverged"):
                kept = (
                    f"checkpoints/global.ckpt (round {self.completed}) is kept"
                    if self.completed
                    else "no round had completed"
                )
                raise TrainingFailure(
                    f"site {site} diverged in round {rnd}: {status.partition(': ')[2]}; {kept} "
                    "(with fl.on_site_failure=skip the site would sit this round out)"
                )
            if status == "ok":
                self.strategy.receive_uplink(site, rnd, arrays_of(reply, "uplink"))
                updates[site] = arrays_of(reply, "shared")
                samples = self.config.fl.client_weights == "samples"
                weights[site] = float(train.get("train_slices", 1)) if samples else 1.0
            else:
                self.log(f"site {site} {status}; left out of round {rnd}'s aggregation")
        if updates:
            self.global_state = self.strategy.aggregate(rnd, updates, weights)
        return rows

    def _complete(
        self,
        rnd: int,
        replies: Mapping[str, RecordDict],
        pending: Mapping[str, dict[str, Any]],
        metrics: MetricsCSV,
        tb: TensorBoardLog,
        start: float,
        first: int,
    ) -> None:
        """Round ``rnd`` is validated everywhere: its metrics rows, checkpoint and progress line."""
        lr = lr_at(self.config, rnd)
        parts = []
        for site in self.sites:
            val = metrics_of(replies[site], "val")
            if val is None:
                raise UserError(f"site {site}: sent no validation metrics for round {rnd}")
            row = pending[site]
            metrics.write(
                round=rnd, site=site, split="train", loss=row["loss"], lr=lr, status=row["status"],
                bytes_sent=row["bytes_sent"], bytes_received=row["bytes_received"],
            )  # fmt: skip
            metrics.write(round=rnd, site=site, split="val", **{k: val[k] for k in METRICS})
            tb.scalars(f"{site}/train", {"loss": row["loss"], "lr": lr}, rnd)
            tb.scalars(f"{site}/val", {k: val[k] for k in METRICS}, rnd)
            self.history[site].append(float(val["psnr"]))
            loss = f"loss {row['loss']:.4f}" if row["status"] == "ok" else "SKIPPED"
            parts.append(f"{site} {loss} psnr {val['psnr']:.2f}")
        self.completed = rnd
        self._save(self.run_dir / "checkpoints" / "global.ckpt")
        total, now = self.config.fl.rounds, time.perf_counter()
        per_round, took, self._mark = (now - start) / (rnd - first + 1), now - self._mark, now
        self.log(
            f"round {rnd:>{len(str(total))}}/{total} | " + " | ".join(parts)
            + f" | {took:.0f} s, eta {(total - rnd) * per_round:.0f} s"
        )  # fmt: skip

    def _results(self, replies: Mapping[str, RecordDict], metrics: MetricsCSV) -> dict[str, Any]:
        """The in-process ``results.json`` from the sites' test reports."""
        sites = {}
        for site in self.sites:
            reply = replies[site]
            best = metrics_of(reply, "best") or {}
            model, zero_filled = metrics_of(reply, "test_model"), metrics_of(reply, "test_zero_filled")
            if model is None or zero_filled is None:
                raise UserError(f"site {site}: sent no test metrics")
            sites[site] = {
                "best_round": int(best.get("round", 0)),
                "model": model,
                "zero_filled": zero_filled,
            }
            metrics.write(
                round=sites[site]["best_round"], site=site, split="test",
                bytes_sent=self.last_bytes[site]["bytes_sent"],
                bytes_received=self.last_bytes[site]["bytes_received"],
                **{k: model[k] for k in METRICS},
            )  # fmt: skip
        return {
            "name": self.config.name,
            "algorithm": self.config.fl.algorithm,
            "rounds": self.completed,
            "sites": sites,
            "mean": {
                which: {k: float(np.mean([s[which][k] for s in sites.values()])) for k in METRICS}
                for which in ("model", "zero_filled")
            },
        }

    # -- checkpoints ---------------------------------------------------------------------------
    def _save(self, path: Path) -> None:
        save_checkpoint(
            {
                "format": CHECKPOINT_FORMAT,
                "kind": "flower-server",
                "round": self.completed,
                "config": self.config.to_dict(),
                "global": self.global_state,
                "strategy": self.strategy.state_dict(),
                "history": self.history,
            },
            path,
        )

    def _load(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("kind") != "flower-server":
            raise UserError(f"checkpoint {path}: not a Flower server checkpoint of this version")
        differences = config_differences(validate_config(ckpt["config"]), self.config)
        if differences:
            raise UserError(f"resume {path}: the config differs from the run's in {'; '.join(differences)}")
        self.global_state = ckpt["global"]
        self.strategy.load_state_dict(ckpt["strategy"])
        self.history = {k: list(v) for k, v in ckpt["history"].items()}
        self.completed = int(ckpt["round"])
