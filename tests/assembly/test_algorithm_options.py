"""Guards the path of every algorithm option from the config to the algorithm's two halves.

For every algorithm in :data:`fl.algorithms.ALGORITHMS` that has ``Options``, each field of the model
(found by iterating ``model_fields``, so a newly added option is covered without editing this file) is
set to a valid non-default value in ``fl.<name>``; the config is validated, the server half and one
site's client half are built through :class:`build.Builder`, and every value must arrive on both.
``fl.head`` and ``fl.flat_aggregation`` must arrive in the halves' :class:`~fl.algorithms.Context`.
Unknown keys and out-of-range values inside an algorithm's section are refused in one line naming the key.
"""

from __future__ import annotations

import copy
import typing
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from assembly.build import Builder
from assembly.config import load_config, validate_config
from fl.algorithms import ALGORITHMS
from tests.conftest import tiny_config_dict
from utils.errors import UserError

WITH_OPTIONS = [name for name, cls in ALGORITHMS.items() if cls.Options is not None]
SITE = "fastmri"  # the first of the tiny config's two sites; the default FL-MRCM target is the last


def _valid(options: type[BaseModel], field: str, value: Any) -> bool:
    try:
        options.model_validate({field: value})
    except ValidationError:
        return False
    return True


def non_default(
    algorithm: str, options: type[BaseModel], field: str, info: FieldInfo, sites: list[str]
) -> Any:
    """A valid value of ``field`` other than its default, derived from the field's type and bounds."""
    default = info.get_default(call_default_factory=True)
    annotation = info.annotation
    inner = [a for a in typing.get_args(annotation) if a is not type(None)]
    if type(None) in typing.get_args(annotation) and len(inner) == 1:
        annotation = inner[0]  # an optional number (None: derived elsewhere) takes a number
    if (algorithm, field) == ("flmrcm", "target_site"):
        candidates: list[Any] = [s for s in sites if s != sites[-1]]
    elif (algorithm, field) == ("fedmri", "share"):  # whole would leave frozen_rounds nothing to train
        candidates = ["all_but_head"]
    elif annotation is bool:
        candidates = [not default]
    elif typing.get_origin(annotation) is Literal:
        candidates = [v for v in typing.get_args(annotation) if v != default]
    elif annotation in (int, float):
        d = default if default is not None else 0
        raw = [d + 1, d * 2, d * 3, d / 2, d / 4, d - 1, 1, 0.5]
        candidates = [annotation(v) for v in raw if annotation is float or float(v).is_integer()]
    else:
        pytest.fail(
            f"fl.{algorithm}.{field}: no generic non-default value for type {annotation!r}; "
            "add a case to tests/assembly/test_algorithm_options.py:non_default"
        )
    for value in candidates:
        if value != default and _valid(options, field, value):
            return value
    pytest.fail(f"fl.{algorithm}.{field}: found no valid value other than the default {default!r}")


def configured(tmp_path, algorithm: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tiny config with every option of ``fl.<algorithm>`` away from its default; and those values."""
    data = tiny_config_dict(tmp_path, algorithm=algorithm)
    sites = [s["name"] for s in data["sites"]]
    options = ALGORITHMS[algorithm].Options
    values = {f: non_default(algorithm, options, f, info, sites) for f, info in options.model_fields.items()}
    data["seed"] = 3
    data["fl"].update({"head": "conv", "flat_aggregation": True, algorithm: copy.deepcopy(values)})
    return data, values


def test_every_known_algorithm_with_options_is_covered():
    assert {"fedmri", "fedprox", "fedrep", "scaffold", "flmrcm"} <= set(WITH_OPTIONS)


@pytest.mark.parametrize("algorithm", WITH_OPTIONS)
def test_every_option_reaches_both_halves(tmp_path, algorithm):
    data, values = configured(tmp_path, algorithm)
    options = ALGORITHMS[algorithm].Options
    for field, value in values.items():
        default = options.model_fields[field].get_default(call_default_factory=True)
        assert value != default, f"fl.{algorithm}.{field}: the test's value equals the default"

    config = validate_config(data)
    builder = Builder(config)
    server = builder.server(builder.module().model)
    client = builder.client(SITE)

    assert type(server) is ALGORITHMS[algorithm]
    assert type(client) is ALGORITHMS[algorithm].client
    assert client.site == SITE
    for half in (server, client):
        assert isinstance(half.options, options)
        arrived = {field: getattr(half.options, field) for field in options.model_fields}
        assert arrived == values, f"{type(half).__name__}: options differ from fl.{algorithm}"
        assert half.context.head == "conv"
        assert half.context.flat_aggregation is True
        assert half.context.seed == 3
        assert half.context.sites == ("fastmri", "brats")


def test_flat_aggregation_and_head_reach_an_algorithm_without_options(tmp_path):
    data = tiny_config_dict(tmp_path, algorithm="fedavg")
    data["fl"].update({"head": "conv", "flat_aggregation": True})
    builder = Builder(validate_config(data))
    server = builder.server(builder.module().model)
    assert server.options is None
    assert (server.context.head, server.context.flat_aggregation) == ("conv", True)
    assert server._averager is not None


def test_non_default_values_are_derived_from_the_fields():
    """The generator follows bounds and types, so a new field gets a value without a hand list."""

    class Probe(BaseModel):
        count: int = 1
        rate: float = 0.5
        flag: bool = False
        mode: Literal["a", "b"] = "a"
        cap: float | None = None

    class Bounded(BaseModel):
        start: int = Field(2, ge=1, le=2)
        weight: float = Field(1.0, ge=0.0, le=1.0)

    sites = ["x", "y"]
    for model, expected in ((Probe, {"count": 2, "rate": 1.5, "flag": True, "mode": "b", "cap": 1.0}),
                            (Bounded, {"start": 1, "weight": 0.5})):  # fmt: skip
        got = {f: non_default("probe", model, f, i, sites) for f, i in model.model_fields.items()}
        assert got == expected


def _config_file(tmp_path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    return str(path)


def test_unknown_key_in_an_algorithm_section_is_refused(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(path := _config_file(tmp_path), ["fl.fedmri.bogus=1"])
    assert str(err.value) == f"config error in {path}: fl.fedmri.bogus: unknown key"


def test_out_of_range_option_names_its_key(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(_config_file(tmp_path), ["fl.fedmri.beta=-1"])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"config error in {_config_file(tmp_path)}: fl.fedmri.beta: ")
    assert ">= 0" in message


def test_options_of_an_algorithm_not_running_are_still_validated(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(_config_file(tmp_path), ["fl.algorithm=fedavg", "fl.fedprox.mu=-0.5"])
    assert ": fl.fedprox.mu: " in str(err.value) and str(err.value).startswith("config error in ")
