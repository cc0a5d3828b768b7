"""Typed, validated run configuration: YAML file + dotted command-line overrides -> :class:`Config`.

Each layer declares its own sections beside its code (``data/options.py`` with the sources' and
masks' options, ``models/options.py``, ``fl/options.py`` with every algorithm's options); this module
assembles them, adds the run's own keys (name, seed, outputs, trainer) and reads files.

``plain_yaml.py`` reads the files within the limits a config keeps; OmegaConf applies overrides such
as ``fl.rounds=5`` or ``sites.0.mask.acceleration=8`` (values are parsed as YAML); pydantic validates
the result against the schema. Every problem becomes one :class:`~utils.errors.UserError` line that
names the key path, e.g. ``config error: sites.0.mask.acceleration: must be >= 1 (got 0.5)``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from assembly.plain_yaml import check_plain_data, first_line, parse_yaml, read_yaml
from assembly.repository import locate
from data.options import NAME_MAX, NAME_PATTERN, DataOptions, SiteOptions
from fl.options import FLOptions
from fl.references import REFERENCES
from models.options import ModelOptions, OptimOptions
from utils.bounds import shown
from utils.errors import UserError
from utils.hardware import on_cpu, resolve_precision
from utils.io import atomic_write_text
from utils.paths import check_path_text


class _Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainerConfig(_Section):
    """Lightning Trainer settings used for every local fit and evaluation."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(
        "auto", description="where to train: auto = a GPU when there is one, else the CPU"
    )
    devices: int = Field(
        1, ge=1, description="devices of one run: train.py uses 1; train_multi_gpu.py launches this many"
    )
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true"] = Field(
        "auto",
        validate_default=True,
        description="auto = bf16-mixed where the device computes bf16 natively (CUDA with bf16, a CPU with "
        "AVX-512 BF16 or AMX), else 32-true; resolved when the config is read, config.yaml holds the choice",
    )
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        0,
        description="loader worker processes per site; auto = the CPUs this process may use, at most "
        "4 (resolved when the loaders are built, so a run resumes on another machine unchanged)",
    )
    persistent_workers: bool = Field(
        True, description="keep each site's loader workers alive from round to round (num_workers > 0)"
    )
    pin_memory: bool | None = Field(
        None, description="page-locked batches for faster copies to a GPU; null = when CUDA is available"
    )
    step_progress: bool = Field(
        False, description="per-step progress bars (the round-level display is always on)"
    )

    @field_validator("precision")
    @classmethod
    def _resolve_auto(cls, precision: str, info: ValidationInfo) -> str:
        accelerator = info.data.get("accelerator", "auto")
        if precision == "16-mixed" and on_cpu(accelerator):
            # Lightning would run bf16-mixed instead and the run would record 16-mixed.
            raise ValueError("16-mixed (float16 autocast) needs a GPU and this run is on the CPU; "
                             "use bf16-mixed or 32-true")  # fmt: skip
        if precision != "auto":
            return precision
        return resolve_precision(accelerator).precision


class Config(_Section):
    """A whole run: the sites, the model, the federated algorithm, optimisation and outputs."""

    name: str = Field(
        "fedmri",
        pattern=NAME_PATTERN,
        max_length=NAME_MAX,
        description="run name: outputs go to <output_dir>/<name>/",
    )
    seed: int = Field(
        0, ge=0, description="seeds initialisation, data order, masks and splits (keyed by purpose)"
    )
    output_dir: str = Field(
        "runs", description="folder of every run's folder (relative: to the working directory)"
    )
    paths: dict[str, str] = Field(
        default_factory=dict,
        description="named data folders that sources refer to as ${paths.NAME}; override them per machine",
    )
    data: DataOptions = DataOptions()
    model: ModelOptions = ModelOptions()
    sites: list[SiteOptions] = Field(min_length=1)
    fl: FLOptions = FLOptions()
    optim: OptimOptions = OptimOptions()
    loss: Literal["mse", "l1"] = Field("mse", description="reconstruction loss of every local step")
    trainer: TrainerConfig = TrainerConfig()

    @field_validator("sites")
    @classmethod
    def _unique_site_names(cls, sites: list[SiteOptions]) -> list[SiteOptions]:
        names = [s.name for s in sites]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"site names must be unique; repeated: {', '.join(duplicates)}")
        return sites

    @model_validator(mode="after")
    def _algorithm_fits_the_sites(self) -> Config:
        self.fl.check_sites([s.name for s in self.sites], self.model.kind)
        if self.optim.reset_state and self.fl.algorithm in REFERENCES:
            raise ValueError(
                f"optim.reset_state: true acts on the sites' optimisers in a federated round; fl.algorithm="
                f"{self.fl.algorithm} trains pooled models outside any round's local fit"
            )
        return self

    @property
    def run_dir(self) -> Path:
        """Where this run writes its outputs."""
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-serialisable form (the resolved config saved with every run)."""
        return self.model_dump(mode="json")


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> Config:
    """Read a YAML config (or start from ``base``, or an empty one), apply ``key.sub=value``
    overrides and validate. A relative ``path`` the working directory lacks is the repository's.

    Raises:
        UserError: unreadable file, malformed override, or any invalid value (naming the key path).
    """
    source = f"config {path}" if path is not None else "config"
    data = base if base is not None else (read_yaml(locate(path)) if path is not None else {})
    check_plain_data(data, source)
    try:
        raw = OmegaConf.create(data)
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        raise UserError(f"{source}: {first_line(err)}") from None
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"override {shown(item)}: expected key.path=value, e.g. fl.rounds=5")
        negative = next((p for p in re.split(r"[.\[\]]", key) if re.fullmatch(r"\s*-\d+\s*", p)), None)
        if negative is not None:
            index = negative.strip()
            raise UserError(f"override {key}: list index {index} is negative; count from 0 (sites.0 = first)")
        try:
            value = parse_yaml(text) if text.strip() else None
        except (yaml.YAMLError, RecursionError, ValueError) as err:
            raise UserError(f"override {key}: cannot parse value {shown(text)} ({first_line(err)})") from None
        check_plain_data(value, f"override {key}")
        try:
            OmegaConf.update(raw, key, value, merge=False)
        except IndexError as err:
            raise UserError(f"override {key}: {_out_of_range(raw, key) or first_line(err)}") from None
        except (OmegaConfBaseException, TypeError, ValueError) as err:
            raise UserError(f"override {key}: {first_line(err)}") from None
    try:
        data = OmegaConf.to_container(raw, resolve=True)
    except (OmegaConfBaseException, ValueError, TypeError, RecursionError) as err:
        raise UserError(f"{source}: {first_line(err)}") from None
    try:
        return validate_config(data)
    except UserError as err:  # name the file: a run's saved config.yaml, or one of several given
        if path is None:
            raise
        raise UserError(re.sub(r"^config( error)?:", f"config error in {path}:", str(err), count=1)) from None


def _out_of_range(raw: Any, key: str) -> str | None:
    """What an override's list index past the end meant: the list's name and length (None when the
    path has no such index)."""
    parts = [p for p in re.split(r"[.\[\]]", key) if p]
    node = raw
    for depth, part in enumerate(parts):
        if OmegaConf.is_list(node):
            if not part.isdigit():
                return None
            if int(part) >= len(node):
                name = ".".join(parts[:depth]) or "the config"
                last = f"; the last is {name}.{len(node) - 1}" if len(node) else ""
                return f"{name} has {len(node)} entries, so there is no index {part}{last}"
            node = node[int(part)]
        elif OmegaConf.is_dict(node) and part in node:
            node = node[part]
        else:
            return None
    return None


def validate_config(data: Any) -> Config:
    """Validate a plain mapping as a :class:`Config`, turning every problem into one UserError line."""
    if not isinstance(data, dict):
        raise UserError(f"config: expected a mapping of sections, got {type(data).__name__}")
    check_plain_data(data, "config")  # also data that was never YAML: JSON, a checkpoint's config
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, data)) from None
    _check_numbers(data, config)
    _check_paths(config)
    return config


PATH_KEYS = ("output_dir", "cache_dir", "root", "manifest", "path", "train", "val", "test")


def _check_paths(config: Config) -> None:
    """Every string: no NUL; every path-like one (a path key, a ``paths.*`` entry, or containing ``/`` or
    starting with ``~``): components a filesystem can hold and a ``~user`` that exists."""
    for key, value in _flatten(config.model_dump()).items():
        if not isinstance(value, str):
            continue
        if "\0" in value:
            raise UserError(f"config error: {key}: contains a NUL character")
        if (
            key.startswith("paths.")
            or key.rsplit(".", 1)[-1] in PATH_KEYS
            or "/" in value
            or value[:1] == "~"
        ):
            check_path_text(value, key)


MAX_FLOAT = 1e6  # no float option means anything beyond this (learning rates, weights, noise scales)
MAX_INT = 2**31 - 1  # counts, sizes and seeds; the data and memory checks bound sizes further


def _check_numbers(data: dict[str, Any], config: Config) -> None:
    """Numbers the schema's types let through but no option means: a boolean given for a number
    (``seed: true``), a float that is infinite or beyond :data:`MAX_FLOAT`, an integer beyond
    :data:`MAX_INT`."""
    validated = _flatten(config.model_dump())
    problems = []
    for key, value in _flatten(data).items():
        if isinstance(value, bool) and key in validated and not isinstance(validated[key], bool):
            problems.append(f"{key}: expected a number, got {str(value).lower()}")
    for key, value in validated.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= MAX_FLOAT):
            problems.append(
                f"{key}: must be a finite number of magnitude at most {MAX_FLOAT:g} (got {shown(value)})"
            )
        elif isinstance(value, int) and abs(value) > MAX_INT:
            problems.append(f"{key}: must be at most {MAX_INT} in magnitude (got {shown(value)})")
    if problems:
        raise UserError("config error: " + "; ".join(problems))


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_differences(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ between two configs, as ``key (old -> new)``."""
    flat_old, flat_new = _flatten(old.to_dict()), _flatten(new.to_dict())
    keys = sorted(set(flat_old) | set(flat_new))
    missing = "<unset>"
    return [
        f"{k} ({flat_old.get(k, missing)!r} -> {flat_new.get(k, missing)!r})"
        for k in keys
        if flat_old.get(k, missing) != flat_new.get(k, missing)
    ]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def format_validation_error(err: ValidationError, data: Any) -> str:
    """One line naming each failing key path, e.g. ``config error: fl.rounds: must be >= 1 (got 0)``."""
    parts = []
    for item in err.errors():
        path = _key_path(item["loc"], data)
        separator = "." if item["type"] == "union_tag_not_found" else ": "
        parts.append(f"{path}{separator}{_describe(item)}" if path else _describe(item))
    return "config error: " + "; ".join(parts)


def _key_path(loc: tuple, data: Any) -> str:
    """Dotted path of an error location, without pydantic's union tags and validator names."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and part == node.get("kind"):
            continue  # discriminated-union tag inserted by pydantic
        elif isinstance(part, str) and ("[" in part or "function-" in part):
            continue
        else:
            node = None
        text = str(part)
        parts.append(text if text.isprintable() else repr(text))  # a key holding a newline stays one line
    return ".".join(parts)


def _describe(item: dict) -> str:
    kind, ctx, value = item["type"], item.get("ctx") or {}, item.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    for name, op in bounds.items():
        if kind == name:
            limit = next(iter(ctx.values()), "?")
            return (
                f"must be {op} {limit:g} (got {shown(value)})"
                if isinstance(limit, float)
                else (f"must be {op} {limit} (got {shown(value)})")
            )
    if kind == "union_tag_not_found":
        return f"{ctx.get('discriminator', 'kind').strip(chr(39))}: required key is missing"
    if kind == "finite_number":
        return f"must be a finite number (got {shown(value)})"
    if kind == "literal_error":
        return f"got {shown(value)}; expected {ctx.get('expected', '?')}"
    if kind == "union_tag_invalid":
        return f"unknown kind {shown(ctx.get('tag'))}; expected one of {ctx.get('expected_tags')}"
    if kind == "too_short":
        return "must not be empty"
    msg = item["msg"].removeprefix("Value error, ")
    if kind.endswith(("_type", "_parsing")):
        return f"{msg[0].lower()}{msg[1:]} (got {shown(value)})"
    return msg
