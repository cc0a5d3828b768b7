"""Everything a run writes and prints about itself: ``metrics.csv``, TensorBoard, the round lines with
time left, ``results.json``/``results.md``, the best model of every site and the figures.

One :class:`Reporter` per run; a process that does not write (a multi-process run's other ranks)
gets one with ``writer=False``, which keeps the history of validation PSNR and prints nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fl.fingerprint import fingerprint
from utils.checkpoint import save_checkpoint
from utils.figures import contrastive_diagnostics, metric_curves, reconstruction_row
from utils.hardware import cpu_identity, on_cpu
from utils.io import atomic_write_text
from utils.metrics import METRICS
from utils.run_log import DIAGNOSTIC_COLUMNS, MetricsCSV, TensorBoardLog

# More than this fraction of FedMRI's encoder weights outside the range of the negatives at the end
# of a local fit: the paper's term sits on its zero-gradient plateau (RESULTS.md, "The contrastive term").
PLATEAU_FRACTION = 0.9


def results_markdown(results: dict[str, Any], precision: str | None = None) -> str:
    """The test table: one row per site (reconstruction and zero-filled input) and the mean; its title
    names the run's ``precision`` (the numbers differ in their last digits between bf16-mixed and
    float32, so a table is compared with one of the same precision)."""
    trained = f", {precision}" if precision else ""
    lines = [
        f"### {results['name']}: {results['algorithm']}, {results['rounds']} rounds "
        f"(test split, best round per site{trained})",
        "",
        "| site | method | best round | volumes | NMSE | PSNR (dB) | SSIM |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, site in results["sites"].items():
        for which, label in (("model", results["algorithm"]), ("zero_filled", "zero-filled")):
            m = site[which]
            lines.append(
                f"| {name} | {label} | {site['best_round'] if which == 'model' else ''} | {m['volumes']} | "
                f"{m['nmse']:.4f} ± {m['nmse_std']:.4f} | {m['psnr']:.2f} ± {m['psnr_std']:.2f} | "
                f"{m['ssim']:.4f} ± {m['ssim_std']:.4f} |"
            )
    for which, label in (("model", results["algorithm"]), ("zero_filled", "zero-filled")):
        m = results["mean"][which]
        lines.append(f"| **mean** | {label} | | | {m['nmse']:.4f} | {m['psnr']:.2f} | {m['ssim']:.4f} |")
    return "\n".join(lines) + "\n"


def _loss_text(values: Mapping[str, Any]) -> str:
    """A site's training loss on the round's line; split into the reconstruction loss and the
    algorithm's penalty when it has one (FedMRI's contrastive term, FedProx's proximal term,
    SCAFFOLD's drift correction, which can be negative)."""
    if values["status"] != "ok":
        return "SKIPPED"
    text = f"loss {values['loss']:.4f}"
    train = values.get("train") or {}
    if "penalty" in train and "loss_rec" in train:
        text += f" = rec {train['loss_rec']:.4f} + penalty {train['penalty']:.4f}"
    return text


# TensorBoard: each site's validation slice per round as one image, four panels side by side (zero-filled
# input, reconstruction, ground truth, |error| x5), and the mean over sites of the validation metrics.
SLICE_TAG = "val_slice"
MEAN_VAL = "mean/val"
SEPARATOR = 2  # pixels of white between the panels


def slice_panels(shown: Mapping[str, Any]) -> np.ndarray:
    """One validation slice as a (H, 4 W + 3 SEPARATOR) grey image in [0, 1]: zero-filled input,
    reconstruction, ground truth (each on the ground truth's range, as the site's figure shows them) and
    the absolute error magnified 5 times on the same scale."""
    target = np.asarray(shown["target"], dtype=np.float32)
    top = float(target.max()) or 1.0
    recon = np.asarray(shown["pred"], dtype=np.float32)
    panels = [np.asarray(shown["zero_filled"], dtype=np.float32), recon, target, 5 * np.abs(recon - target)]
    gap = np.ones((target.shape[0], SEPARATOR), dtype=np.float32)
    row = [part for panel in panels for part in (np.clip(panel / top, 0.0, 1.0), gap)][:-1]
    return np.concatenate(row, axis=1)


class Reporter:
    """Writes a run's rows, progress, results, best models and figures.

    Args:
        run_dir: the run's output folder.
        name: the run's name; ``algorithm``: ``fl.algorithm``; ``rounds``: ``fl.rounds``.
        config: the resolved config as plain data (stored in every best-model checkpoint).
        sites: the site names, in order.
        writer: whether this process writes (False: only the history is kept).
        tensorboard: whether rows also go to TensorBoard (``tb/``).
        log: where progress lines go.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        name: str,
        algorithm: str,
        rounds: int,
        config: dict[str, Any],
        sites: list[str],
        writer: bool = True,
        tensorboard: bool = True,
        log: Callable[[str], None] = print,
    ):
        self.run_dir, self.name, self.algorithm, self.rounds = Path(run_dir), name, algorithm, rounds
        self.config, self.writer, self.tensorboard, self.log = config, writer, tensorboard, log
        self.history: dict[str, list[float]] = {s: [] for s in sites}
        self.metrics: MetricsCSV | None = None
        self.tb: TensorBoardLog | None = None
        self._start = self._mark = self._round_end = 0.0
        self._first = 1
        # Per completed round: its wall seconds and the mean local optimiser steps of a site (a resumed
        # run gets its earlier processes' rounds back from the checkpoint: :meth:`load_timing`).
        self.seconds: list[float] = []
        self.steps: list[float] = []
        self.diagnostics: dict[str, dict[int, dict[str, float]]] = {s: {} for s in sites}
        self._plateau_noted = False

    # -- the run -------------------------------------------------------------------------------
    def open(self, completed: int) -> None:
        """Start (or continue after round ``completed``): drop rows of a round cut short, open TensorBoard."""
        if self.writer:
            self.metrics = MetricsCSV(self.run_dir / "metrics.csv")
            self.metrics.truncate_to(completed)
            for row in self.metrics.rows():  # a resumed run's figure covers its earlier rounds too
                values = {k: float(row[k]) for k in DIAGNOSTIC_COLUMNS if row.get(k)}
                if row["split"] == "train" and values:
                    self.diagnostics.setdefault(row["site"], {})[int(row["round"])] = values
            if self.tensorboard:
                self.tb = TensorBoardLog(self.run_dir / "tb", purge_step=completed + 1)
        self._start = self._mark = self._round_end = time.perf_counter()
        self._first = completed + 1

    def close(self) -> None:
        """Close TensorBoard's event file."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def round(self, rnd: int, summary: Mapping[str, Mapping[str, Any]], lr: float) -> None:
        """Round ``rnd`` is done: its rows (train and val per site), its history entries and timing."""
        now = time.perf_counter()
        self.seconds.append(now - self._round_end)  # since the previous round was reported (or the start)
        self._round_end = now
        steps = [v["steps"] for v in summary.values() if v.get("steps")]
        if steps:
            self.steps.append(float(np.mean(steps)))
        for site, values in summary.items():
            self.history[site].append(values["psnr"])
            train = {k: v for k, v in values.get("train", {}).items() if k in DIAGNOSTIC_COLUMNS}
            if train:
                self.diagnostics.setdefault(site, {})[rnd] = train
            if not self.writer:
                continue
            self.metrics.write(
                round=rnd, site=site, split="train", loss=values["loss"], lr=lr,
                status=values.get("status", "ok"),
                bytes_sent=values.get("bytes_sent"), bytes_received=values.get("bytes_received"),
                **train,
            )  # fmt: skip
            self.metrics.write(round=rnd, site=site, split="val", **{k: values[k] for k in METRICS})
            if self.tb is not None:  # every value the fit logged, an algorithm's own ones included
                logged = {k: v for k, v in values.get("train", {}).items() if isinstance(v, (int, float))}
                self.tb.scalars(f"{site}/train", {"loss": values["loss"], "lr": lr, **logged}, rnd)
                self.tb.scalars(f"{site}/val", {k: values[k] for k in METRICS}, rnd)
                if values.get("shown") is not None:
                    self.tb.image(f"{site}/{SLICE_TAG}", slice_panels(values["shown"]), rnd)
        if self.tb is not None:
            self.tb.scalars(
                MEAN_VAL, {k: float(np.mean([v[k] for v in summary.values()])) for k in METRICS}, rnd
            )

    def progress(self, rnd: int, summary: Mapping[str, Mapping[str, Any]]) -> None:
        """The round's line: each site's loss and validation PSNR, the round's time and the time left."""
        now = time.perf_counter()
        took, self._mark = now - self._mark, now
        per_round = (now - self._start) / (rnd - self._first + 1)
        parts = [f"{site} {_loss_text(v)} psnr {v['psnr']:.2f}" for site, v in summary.items()]
        eta = (self.rounds - rnd) * per_round
        self.log(
            f"round {rnd:>{len(str(self.rounds))}}/{self.rounds} | " + " | ".join(parts)
            + f" | {took:.0f} s, eta {eta:.0f} s" + self._plateau_note(summary)
        )  # fmt: skip

    def _plateau_note(self, summary: Mapping[str, Mapping[str, Any]]) -> str:
        """Once per run: a note when a site's encoder ended a round on the contrastive term's plateau."""
        if self._plateau_noted:
            return ""
        stuck = [
            site
            for site, v in summary.items()
            if v.get("train", {}).get("con_outside", 0.0) > PLATEAU_FRACTION
            and v["train"].get("penalty") is not None
        ]
        if not stuck:
            return ""
        self._plateau_noted = True
        return (
            f" | note: the contrastive term is on its zero-gradient plateau at {', '.join(stuck)} "
            f"(> {PLATEAU_FRACTION:.0%} of encoder weights outside the previous encoders' range); "
            "fl.fedmri.variant=clipped avoids it (see RESULTS.md)"
        )

    # -- the end -------------------------------------------------------------------------------
    def results(self, tested: Mapping[str, Mapping[str, Any]], completed: int) -> dict[str, Any]:
        """Every site's test results; writes its row, best model and figure (if this process writes)."""
        sites = {}
        for site, result in tested.items():
            model = result["model"]
            sites[site] = {
                "best_round": result["best_round"],
                "model": model,
                "zero_filled": result["zero_filled"],
            }
            if "volumes" in result:
                sites[site]["volumes"] = result["volumes"]
            if self.writer:
                self._site_outputs(site, result)
        results: dict[str, Any] = {
            "name": self.name,
            "algorithm": self.algorithm,
            "rounds": completed,
            "sites": sites,
        }
        results["mean"] = {
            which: {k: float(np.mean([s[which][k] for s in sites.values()])) for k in METRICS}
            for which in ("model", "zero_filled")
        }
        if self.tb is not None:  # at the run's last round, beside the validation curves
            for site, values in sites.items():
                self.tb.scalars(f"{site}/test", {k: values["model"][k] for k in METRICS}, completed)
                self.tb.scalars(f"{site}/test_zero_filled", {k: values["zero_filled"][k] for k in METRICS},
                                completed)  # fmt: skip
            self.tb.scalars("mean/test", results["mean"]["model"], completed)
            self.tb.scalars("mean/test_zero_filled", results["mean"]["zero_filled"], completed)
        if self.writer and any(self.history.values()):
            metric_curves(self.run_dir / "figures" / "val_psnr.png", range(1, completed + 1), self.history)
        if self.writer and any(
            "con_outside" in r for rounds in self.diagnostics.values() for r in rounds.values()
        ):
            contrastive_diagnostics(self.run_dir / "figures" / "fedmri_term.png", self.diagnostics)
        return results

    def _site_outputs(self, site: str, result: Mapping[str, Any]) -> None:
        best = result.get("best")
        if best and best["model"]:
            save_checkpoint(
                {
                    "site": site,
                    "round": best["round"],
                    "val_psnr": best["psnr"],
                    "model": best["model"],
                    "config": self.config,
                    "fingerprint": fingerprint(self.config),
                },
                self.run_dir / "checkpoints" / f"best_{site}.ckpt",
            )
        model = result["model"]
        self.metrics.write(
            round=result["best_round"], site=site, split="test",
            bytes_sent=result.get("bytes_sent"), bytes_received=result.get("bytes_received"),
            **{k: model[k] for k in METRICS},
        )  # fmt: skip
        figure = result.get("figure")
        if figure is not None:
            reconstruction_row(
                self.run_dir / "figures" / f"{site}.png",
                figure["zero_filled"],
                figure["pred"],
                figure["target"],
                title=f"{site}: {figure['volume']}, slice {figure['slice']}",
            )

    def timing_state(self) -> dict[str, list[float]]:
        """The completed rounds' wall seconds and local steps, for the run's checkpoint."""
        return {"seconds": list(self.seconds), "steps": list(self.steps)}

    def load_timing(self, state: Mapping[str, Any]) -> None:
        """Continue the timing of :meth:`timing_state` (a resumed run's timing covers every round)."""
        self.seconds, self.steps = [float(s) for s in state["seconds"]], [float(s) for s in state["steps"]]

    def write_results(self, results: dict[str, Any]) -> None:
        """``results.json``, ``results.md`` and ``timing.json`` (wall seconds and mean local optimiser
        steps of a site per completed round, over every process of a resumed run; the CPU and torch
        threads of this process), and the table on the console."""
        if not self.writer:
            return
        atomic_write_text(self.run_dir / "results.json", json.dumps(results, indent=2) + "\n")
        if self.seconds:  # wall clock, so apart from the results (which repeat bit for bit)
            timing = {
                "seconds_per_round": float(np.mean(self.seconds)),
                "local_steps_per_round": float(np.mean(self.steps)) if self.steps else None,
                "rounds_timed": len(self.seconds),
                "cpu": cpu_identity(),
                "threads": torch.get_num_threads(),
            }
            accelerator = str(self.config.get("trainer", {}).get("accelerator", "auto"))
            if not on_cpu(accelerator) and torch.cuda.is_available():
                timing["gpu"] = torch.cuda.get_device_name(0)
            atomic_write_text(self.run_dir / "timing.json", json.dumps(timing, indent=2) + "\n")
        table = results_markdown(results, self.config.get("trainer", {}).get("precision"))
        atomic_write_text(self.run_dir / "results.md", table)
        self.log("\n" + table)
