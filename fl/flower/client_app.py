"""The Flower ClientApp: one site of the federation, named by its SuperNode's node config.

Three messages reach it (``fl/flower/wire.py`` lists what they hold):

- ``query.identify``: the site names itself; nothing else crosses and torch is not even imported;
- ``train``: validate the previous round with the new global tensors (from the second round on),
  then train this round from them; the reply carries the site's shared tensors, what its strategy
  uplinks, its training loss and validation metrics;
- ``evaluate``: validate the last round, test the best model; the reply carries test metrics.

The first message of a run to a node carries the site's part of the federation config; the site
keeps it in ``context.state`` and its run directory. Every user error at the site comes back to the
server as one line naming the site.
"""

from __future__ import annotations

import json
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fl.flower.node import NodeSettings
from utils.errors import UserError

app = ClientApp()

STATE = "fedmri"  # context.state record: the run's name and this site's config (JSON)


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
    """Validate the previous round (if asked), then run this round's local fit."""
    return _guarded(message, context, final=False)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Validate the last round (if asked), then test the site's best model."""
    return _guarded(message, context, final=True)


def _guarded(message: Message, context: Context, final: bool) -> Message:
    site = "?"
    try:
        settings = NodeSettings.from_node_config(context.node_config)
        site = settings.site
        content = _handle(message, context, settings, final)
    except UserError as err:
        content = RecordDict({"status": ConfigRecord({"site": site, "error": str(err)})})
    return Message(content, reply_to=message)


def _site_config(message: Message, context: Context, settings: NodeSettings, name: str):
    """This site's config: from the message (first of the run), ``context.state``, or its run directory."""
    from fl.flower.site import site_config
    from fl.flower.wire import config_of
    from utils.config import load_config

    sent = config_of(message.content, "config").get("json")
    if sent:
        context.state[STATE] = ConfigRecord({"name": name, "config": sent})
        return site_config(json.loads(sent), settings)
    kept = context.state.get(STATE)
    if isinstance(kept, ConfigRecord) and kept.get("name") == name:
        return site_config(json.loads(str(kept["config"])), settings)
    saved = settings.output_dir / name / settings.site / "config.yaml"
    if saved.is_file():
        return load_config(saved)
    raise UserError(f"site {settings.site}: no config for run {name!r} (not sent, not kept, not in {saved})")


def _handle(message: Message, context: Context, settings: NodeSettings, final: bool) -> RecordDict:
    from fl.flower.site import SiteWorker
    from fl.flower.wire import arrays_of, config_of, content, metric_record, summary_record

    step: dict[str, Any] = config_of(message.content, "round")
    rnd, name = int(step["round"]), str(step["name"])
    validate = bool(step.get("validate", False))
    worker = SiteWorker(
        _site_config(message, context, settings, name),
        log=lambda line: print(f"[{settings.site}] {line}", flush=True),
    )
    global_state = arrays_of(message.content, "global")
    metrics: dict[str, Any] = {}
    last = rnd if final else rnd - 1  # the round validated by this message, if any
    if validate:
        worker.load_trained(last)
        metrics["val"] = summary_record(worker.validate(last, global_state))
    elif bool(step.get("fresh", False)):
        worker.start_fresh(bool(step.get("overwrite", False)))
    else:
        worker.load_completed(last)
    if final:
        tested = worker.finish()
        metrics["test_model"] = summary_record(tested["model"])
        metrics["test_zero_filled"] = summary_record(tested["zero_filled"])
        metrics["best"] = metric_record(
            {"round": int(tested["best_round"]), "val_psnr": worker.site.best_psnr}
        )
        return content(configs={"status": {"site": worker.name}}, metrics=metrics)
    outcome = worker.train(rnd, global_state, arrays_of(message.content, "downlink"))
    metrics["train"] = metric_record({"loss": outcome.loss, "train_slices": outcome.train_slices})
    arrays = {"uplink": outcome.uplink}
    if outcome.shared is not None:
        arrays["shared"] = outcome.shared
    return content(
        configs={"status": {"site": worker.name, "train": outcome.status}}, arrays=arrays, metrics=metrics
    )
