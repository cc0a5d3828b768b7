"""The Flower ClientApp: one site of the federation, named by its SuperNode's node config.

Three messages reach it (``fl/flower/wire.py`` lists what they hold):

- ``query.identify``: the site names itself; nothing else crosses and torch is not even imported;
- ``train``: the round's payload (global shared tensors, the algorithm's extra tensors and values);
  the site trains and replies with its shared tensors, its extra tensors and values, its training
  loss and status;
- ``evaluate``: ``step: validate`` with the new global tensors (the site validates and keeps its
  best round), or ``step: test`` after the last round (the best model's test metrics).

The first message of a run to a node carries the site's part of the federation config; the site
keeps it in ``context.state`` and its run directory. Every user error at the site comes back to the
server as one line naming the site. This module is an entry point: it builds the site from the
config with ``assembly.build.Builder``.

Flower runs the ClientApp in a ``flwr-clientapp`` process of the SuperNode's, one per message, and
stops it with SIGINT when the SuperNode ends (Ctrl-C, SIGTERM). SIGINT or SIGTERM while a step runs
abandons it (:mod:`utils.interrupt`): the site's files keep its last completed step, never half of
one (``fl/flower/site.py``), the ClientApp prints one line saying the round they hold and how the run
continues, and Flower's own handler then ends the process. There is no reply: the server's run stops
when the SuperLink finds the SuperNode gone (a ClientApp process stopped alone leaves it waiting until
its ``reply-wait`` runs out, as Flower 1.42 answers no message of a task that ended so), and continues
with ``resume=true``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fl.flower.node import NodeSettings
from utils.cli import describe_failure
from utils.errors import UserError
from utils.interrupt import Interrupted, handled, interruptible, pass_on

app = ClientApp()

STATE = "fedmri"  # context.state record: the run's name and this site's config (JSON)
RESUME = "flwr run <app> <federation> --run-config '... resume=true'"  # the server's run, continued


@app.query("identify")
def identify(message: Message, context: Context) -> Message:
    """Name the site (from the node config)."""
    try:
        site = NodeSettings.from_node_config(context.node_config).site
    except UserError as err:
        return Message(RecordDict({"status": ConfigRecord({"error": str(err)})}), reply_to=message)
    return Message(RecordDict({"status": ConfigRecord({"site": site})}), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Run this round's local fit from the payload."""
    return _guarded(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Validate the round with the new global tensors, or test the site's best model."""
    return _guarded(message, context)


def _guarded(message: Message, context: Context) -> Message:
    if handled():  # called inside a command (deploy/local.py under the ServerApp): its interruption
        return _answer(message, context, {})
    where: dict[str, Any] = {}
    try:
        with interruptible():
            return _answer(message, context, where)
    except Interrupted as err:
        print(interrupted_line(where), file=sys.stderr, flush=True)
        pass_on(err)


def interrupted_line(where: Mapping[str, Any]) -> str:
    """The one line of a step that SIGINT or SIGTERM abandoned: the round the site's files hold."""
    site, worker = where.get("site", "?"), where.get("worker")
    step = f"the {where['step']} step of round {where['round']}" if "step" in where else "a message"
    if worker is not None and worker.loaded:
        kept = f"after round {worker.completed}" if worker.completed else "before round 1 completed"
        what = f"interrupted {kept}, in {step}"
    else:
        what = f"interrupted in {step}, before the site's files were read"
    return f"site {site}: {what}; continue with: {RESUME}"


def _answer(message: Message, context: Context, where: dict[str, Any]) -> Message:
    site = "?"
    try:
        settings = NodeSettings.from_node_config(context.node_config)
        site = where["site"] = settings.site
        content = _handle(message, context, settings, where)
    except Exception as err:  # the boundary: one line back to the server, never a traceback
        line = describe_failure(err, f"ClientApp of site {site}")[0].removeprefix("error: ")
        content = RecordDict({"status": ConfigRecord({"site": site, "error": line})})
    return Message(content, reply_to=message)


def _site_config(message: Message, context: Context, settings: NodeSettings, name: str):
    """This site's config: from the message (first of the run), ``context.state``, or its run directory."""
    from assembly.config import load_config, validate_config
    from fl.flower.site import site_config
    from fl.flower.wire import config_of

    sent = config_of(message.content, "config").get("json")
    if sent:
        context.state[STATE] = ConfigRecord({"name": name, "config": sent})
        return validate_config(site_config(json.loads(sent), settings))
    kept = context.state.get(STATE)
    if isinstance(kept, ConfigRecord) and kept.get("name") == name:
        return validate_config(site_config(json.loads(str(kept["config"])), settings))
    saved = settings.output_dir / name / settings.site / "config.yaml"
    if saved.is_file():
        return load_config(saved)
    raise UserError(f"site {settings.site}: no config for run {name!r} (not sent, not kept, not in {saved})")


def _worker(config, log):
    """The site's worker: its data, model and algorithm half built as the in-process run builds them."""
    from assembly.build import Builder, quiet_lightning
    from fl.flower.site import SiteWorker

    quiet_lightning()
    builder = Builder(config, log=log)
    (site,), _ = builder.sites(builder.prepare_data())
    return SiteWorker(
        site,
        builder.reporter(tensorboard=False),
        config=config.to_dict(),
        local_epochs=config.fl.local_epochs,
        lr=config.optim.lr_at,
        skip=config.fl.on_site_failure == "skip",
    )


def _handle(message: Message, context: Context, settings: NodeSettings, where: dict[str, Any]) -> RecordDict:
    from fl.flower.wire import (
        arrays_of,
        config_of,
        content,
        metric_record,
        payload_of,
        reply_content,
        summary_record,
    )

    step: dict[str, Any] = config_of(message.content, "round")
    rnd, name, kind = int(step["round"]), str(step["name"]), str(step.get("step", ""))
    where.update(step=kind, round=rnd)
    worker = where["worker"] = _worker(
        _site_config(message, context, settings, name),
        log=lambda line: print(f"[{settings.site}] {line}", flush=True),
    )
    status = {"site": worker.name}
    if kind == "train":
        if bool(step.get("fresh", False)):
            worker.start_fresh(bool(step.get("overwrite", False)))
        else:
            worker.load_completed(rnd - 1)
        result = worker.train(rnd, payload_of(message.content))
        metrics = {
            "train": metric_record(
                {"loss": result.loss, "train_slices": result.train_slices, "steps": result.steps}
            )
        }
        if result.values:
            metrics["train_values"] = metric_record(result.values)
        return reply_content(result.reply, {"status": status | {"train": result.status}}, metrics)
    if kind == "validate":
        val = worker.validate(rnd, arrays_of(message.content, "global"))
        return content(configs={"status": status}, metrics={"val": summary_record(val)})
    if kind == "test":
        worker.load_latest()
        tested = worker.test()
        metrics = {
            "test_model": summary_record(tested["model"]),
            "test_zero_filled": summary_record(tested["zero_filled"]),
            "best": metric_record({"round": int(tested["best_round"]), "val_psnr": tested["best_psnr"]}),
        }
        # Per-volume metrics stay in the site's own results.json: volume names may identify patients.
        return content(configs={"status": status}, metrics=metrics)
    raise UserError(
        f"site {settings.site}: unknown step {kind!r} in a {message.metadata.message_type} message"
    )
