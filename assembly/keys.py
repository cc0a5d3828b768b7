"""Every config key with its type, default and description, read from the schema itself
(``python train.py --options``), so that the list cannot drift from what the config accepts.

The walk follows the schema as :mod:`assembly.config` assembles it: the run's own keys, every section
declared beside its code, each site's ``source`` and ``mask`` once per ``kind`` (their keys differ by
kind), and each algorithm's own section under ``fl.<algorithm>``.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union

if TYPE_CHECKING:  # the schema is imported when the list is made, so that --help stays quick
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class Key:
    """One config key: its dotted path (``N`` for a list index, ``NAME`` for a name you choose), the
    ``kind`` it belongs to (a source's or mask's keys differ by kind), its type, default and meaning."""

    path: str
    kind: str
    type: str
    default: str
    description: str


def config_keys() -> list[Key]:
    """Every key of the schema, in the order a config file holds them."""
    from assembly.config import Config

    return list(_walk(Config, "", ""))


def _walk(model: type[BaseModel], prefix: str, kind: str) -> Iterator[Key]:
    from fl.algorithms import ALGORITHMS
    from fl.options import FLOptions, algorithm_names

    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = _unwrap(field.annotation)
        variants = _models(annotation)
        if variants and len(variants) > 1:  # a discriminated union: each kind's keys
            kinds = [_kind_of(v) for v in variants]
            yield Key(f"{path}.kind", "", f"one of {' | '.join(kinds)}", "required", field.description or "")
            for variant, label in zip(variants, kinds):
                yield from (k for k in _walk(variant, f"{path}.", label) if not k.path.endswith(".kind"))
        elif variants:
            yield from _walk(variants[0], f"{path}.", kind)
        elif typing.get_origin(annotation) is list and _models(typing.get_args(annotation)[0]):
            (item,) = _models(typing.get_args(annotation)[0])
            yield from _walk(item, f"{path}.N.", kind)
        elif typing.get_origin(annotation) is dict:
            value = typing.get_args(annotation)[1] if typing.get_args(annotation) else Any
            yield Key(f"{path}.NAME", kind, _type_text(value, None), "none", field.description or "")
        else:
            kind_type = _type_text(field.annotation, field)
            if model is FLOptions and name == "algorithm":  # a str checked against the registry
                kind_type = "one of " + " | ".join(algorithm_names())
            yield Key(path, kind, kind_type, _default_text(field), field.description or "")
    if model is FLOptions:  # each algorithm's own section, validated by the algorithm's Options
        for name, algorithm in ALGORITHMS.items():
            if algorithm.Options is not None:
                yield from _walk(algorithm.Options, f"fl.{name}.", "")


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> X."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_args(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return tuple(_unwrap(a) for a in typing.get_args(annotation))
    return (annotation,)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The sections a field holds (several for a discriminated union), or none for a plain value."""
    from pydantic import BaseModel

    found = [a for a in _union_args(_unwrap(annotation)) if a is not type(None)]
    if found and all(isinstance(a, type) and issubclass(a, BaseModel) for a in found):
        return found
    return []


def _kind_of(model: type[BaseModel]) -> str:
    field = model.model_fields.get("kind")
    if field is not None and typing.get_origin(field.annotation) is Literal:
        return str(typing.get_args(field.annotation)[0])
    return model.__name__


def _type_text(annotation: Any, field: FieldInfo | None) -> str:
    """``int >= 1``, ``one of a | b``, ``float or null``, ``list of float``..."""
    from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen

    annotation = _unwrap(annotation)
    parts = []
    for arg in _union_args(annotation):
        if arg is type(None):
            continue
        origin = typing.get_origin(arg)
        if origin is Literal:
            values = [str(v) for v in typing.get_args(arg)]
            parts.append(values[0] if len(values) == 1 else "one of " + " | ".join(values))
        elif origin in (list, tuple):
            inner = " and ".join(_type_text(a, None) for a in typing.get_args(arg) if a is not Ellipsis)
            parts.append(f"{origin.__name__} of {inner or 'values'}")
        elif origin is dict:
            parts.append("mapping")
        else:
            parts.append(getattr(arg, "__name__", str(arg)))
    text = " or ".join(parts) or "null"
    if field is not None:
        low = next(((f"{m.ge}", "[") for m in field.metadata if isinstance(m, Ge)), None)
        low = low or next(((f"{m.gt}", "(") for m in field.metadata if isinstance(m, Gt)), None)
        high = next(((f"{m.le}", "]") for m in field.metadata if isinstance(m, Le)), None)
        high = high or next(((f"{m.lt}", ")") for m in field.metadata if isinstance(m, Lt)), None)
        if low and high:
            text += f" in {low[1]}{low[0]}, {high[0]}{high[1]}"
        elif low:
            text += f" {'>=' if low[1] == '[' else '>'} {low[0]}"
        elif high:
            text += f" {'<=' if high[1] == ']' else '<'} {high[0]}"
        for meta in field.metadata:
            if isinstance(meta, MinLen) and meta.min_length:
                text += f", at least {meta.min_length} long"
            if isinstance(meta, MaxLen):
                text += f", at most {meta.max_length} long"
    if type(None) in _union_args(annotation):
        text += " or null"
    return text


def _default_text(field: FieldInfo) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(list(value) if isinstance(value, tuple) else value)


def options_text(width: int | None = None) -> str:
    """The listing ``--options`` prints: one entry per key (path, the kinds it belongs to, type,
    default), its description indented below; a key that several kinds share alike is listed once."""
    width = width or min(110, shutil.get_terminal_size((110, 24)).columns)
    lines = [
        "Every config key (N: a list index, from 0; NAME: a name you choose). Set them in the YAML or on",
        "the command line as key.path=value, e.g. fl.rounds=5 sites.0.mask.acceleration=8.",
        "",
    ]
    keys = config_keys()
    every = {k.path.removesuffix("kind"): k.type.removeprefix("one of ").split(" | ") for k in keys
             if k.path.endswith(".kind")}  # fmt: skip
    kinds: dict[tuple[str, str, str, str], list[str]] = {}
    for key in keys:
        kinds.setdefault((key.path, key.type, key.default, key.description), []).append(key.kind)
    for (path, type_, default, description), where in kinds.items():
        union = next((v for prefix, v in every.items() if path.startswith(prefix)), None)
        label = f" (kind: {', '.join(where)})" if any(where) and where != union else ""
        lines.append(f"{path}{label}  [{type_}; default {default}]")
        if description:
            lines += textwrap.wrap(description, width, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines) + "\n"


class OptionsAction(argparse.Action):
    """``--options``: print :func:`options_text` and exit, as ``--help`` does."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any):
        kwargs.setdefault("help", "list every config key with its type, default and description, and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(options_text(), end="")
        parser.exit()
