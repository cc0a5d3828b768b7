"""What the Flower app's messages hold, and how big they are on the wire.

A message's content is a Flower ``RecordDict`` of named records:

============ ============= =======================================================================
record       type          holds
============ ============= =======================================================================
round        ConfigRecord  server -> site: the run's name, round number, step (``train``, ``validate``
                           or ``test``), whether the run starts fresh (and may replace a run)
config       ConfigRecord  server -> site, first message to a node only: the federation config of
                           this site (JSON text; hyper-parameters, its source options and mask)
global       ArrayRecord   server -> site: the global shared tensors (train: the payload's; validate: the
                           new ones after aggregation)
extra        ArrayRecord   server -> site, train: the payload's extra tensors (e.g. other sites' previous
                           encoders, SCAFFOLD's server variate); site -> server, train: the reply's
                           (e.g. SCAFFOLD's variate change)
values       ConfigRecord  server -> site, train: the payload's plain values; site -> server, train: the
                           reply's (e.g. Ditto's optimiser steps on its global model); only if any
status       ConfigRecord  site -> server: its name; ``ok``, ``skipped: ...`` or ``diverged: ...``;
                           or ``error``: one line naming what is wrong at the site
train        MetricRecord  site -> server: mean training loss, training slices (aggregation weight)
train_values MetricRecord  site -> server, train: the fit's loss parts and its plan's after_fit values
shared       ArrayRecord   site -> server: its shared tensors after the local fit
val          MetricRecord  site -> server, validate: validation metrics of the round (NMSE, PSNR, SSIM)
test_*       MetricRecord  site -> server, at the end: test metrics of its best model and zero-filled
best         MetricRecord  site -> server, at the end: its best round and validation PSNR
============ ============= =======================================================================

A payload and a reply cross whole (:func:`payload_content`, :func:`payload_of`, :func:`reply_content`,
:func:`reply_of`): every tensor with its name, dtype and shape, every value with its type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from utils.errors import UserError

if TYPE_CHECKING:  # torch is imported where tensors are converted: naming a site needs no torch
    from torch import Tensor

    from fl.algorithms.base import Payload, Reply

IDENTIFY = "query.identify"  # the site names itself (nothing else is exchanged)
TRAIN = "train"  # the round's local fit
EVALUATE = "evaluate"  # validate a round with the new global tensors, or test the best model

SUMMARY_KEYS = ("nmse", "psnr", "ssim", "nmse_std", "psnr_std", "ssim_std", "volumes")


def to_record(tensors: Mapping[str, Tensor]) -> ArrayRecord:
    """An ArrayRecord holding exactly ``tensors`` (names kept, values copied to host memory)."""
    import torch

    record = ArrayRecord()
    for name, tensor in tensors.items():
        if tensor.dtype == torch.bfloat16:
            raise UserError(
                f"trainer.precision: tensor {name} is bfloat16, which Flower's arrays cannot carry; "
                "use 32-true or a mixed precision"
            )
        record[name] = Array(tensor.detach().cpu().contiguous().numpy())
    return record


def from_record(record: ArrayRecord | None) -> dict[str, Tensor]:
    """The tensors of an ArrayRecord, by name (an absent record is empty)."""
    import torch

    if record is None:
        return {}
    return {name: torch.from_numpy(np.array(array.numpy(), copy=True)) for name, array in record.items()}


def metric_record(values: Mapping[str, Any]) -> MetricRecord:
    """A MetricRecord of plain numbers (ints stay ints, everything else becomes a float)."""
    return MetricRecord({k: int(v) if isinstance(v, int) else float(v) for k, v in values.items()})


def summary_record(summary: Mapping[str, Any]) -> MetricRecord:
    """The scalar metrics of a validation or test summary (mean, std, volume count)."""
    return metric_record({k: summary[k] for k in SUMMARY_KEYS})


def config_of(content: RecordDict, name: str) -> dict[str, Any]:
    """The values of ConfigRecord ``name`` of a message content ({} if absent)."""
    record = content.config_records.get(name)
    return dict(record) if record is not None else {}


def metrics_of(content: RecordDict, name: str) -> dict[str, Any] | None:
    """The values of MetricRecord ``name`` of a message content (None if absent)."""
    record = content.metric_records.get(name)
    return dict(record) if record is not None else None


def arrays_of(content: RecordDict, name: str) -> dict[str, Tensor]:
    """The tensors of ArrayRecord ``name`` of a message content ({} if absent)."""
    return from_record(content.array_records.get(name))


def content(
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    arrays: Mapping[str, Mapping[str, Tensor]] | None = None,
    metrics: Mapping[str, MetricRecord] | None = None,
) -> RecordDict:
    """A message content from config values, named tensor sets and metric records."""
    records: dict[str, Any] = {}
    for name, values in (configs or {}).items():
        records[name] = ConfigRecord(dict(values))
    for name, tensors in (arrays or {}).items():
        records[name] = to_record(tensors)
    records.update(metrics or {})
    return RecordDict(records)


def values_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """A payload's or reply's plain values as ConfigRecord values, each a bool, int, float or str (the
    types a ConfigRecord carries back unchanged); anything else is a TypeError naming its key."""
    for key, value in values.items():
        if not isinstance(value, bool | int | float | str):
            raise TypeError(f"value {key!r}: a {type(value).__name__}; a payload or reply carries only "
                            "bool, int, float and str values")  # fmt: skip
    return dict(values)


def payload_content(payload: Payload, configs: Mapping[str, Mapping[str, Any]]) -> RecordDict:
    """A train message's content: the config records ``configs`` and the payload (global and extra
    tensors; its values when it has any)."""
    if payload.values:
        configs = {**configs, "values": values_record(payload.values)}
    return content(configs=configs, arrays={"global": payload.global_state, "extra": payload.extra})


def payload_of(received: RecordDict) -> Payload:
    """The payload of a train message's content."""
    from fl.algorithms.base import Payload

    return Payload(arrays_of(received, "global"), arrays_of(received, "extra"), config_of(received, "values"))


def reply_content(
    reply: Reply | None,
    configs: Mapping[str, Mapping[str, Any]],
    metrics: Mapping[str, MetricRecord] | None = None,
) -> RecordDict:
    """A train reply's content: ``configs``, ``metrics`` and the reply (shared and extra tensors; its
    values when it has any), or no reply (a site that sat the round out)."""
    if reply is None:
        return content(configs=configs, metrics=metrics)
    if reply.values:
        configs = {**configs, "values": values_record(reply.values)}
    arrays = {"shared": reply.shared, "extra": reply.extra}
    return content(configs=configs, arrays=arrays, metrics=metrics)


def reply_of(received: RecordDict) -> Reply:
    """The reply of a train reply's content."""
    from fl.algorithms.base import Reply

    return Reply(arrays_of(received, "shared"), arrays_of(received, "extra"), config_of(received, "values"))


def message_bytes(message: Message) -> int:
    """Bytes of a message as it is serialised for transport: every distinct object of its tree
    (metadata, record dict, records, arrays and their chunks), without the transport's framing."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


def tensor_stats(message: Message) -> tuple[int, int]:
    """(number of arrays, bytes of their raw values) in a message."""
    count = size = 0
    if message.has_content():
        for record in message.content.array_records.values():
            for array in record.values():
                count += 1
                size += int(np.prod(array.shape, dtype=np.int64)) * np.dtype(array.dtype).itemsize
    return count, size
