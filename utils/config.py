"""Typed, validated run configuration: YAML file + dotted command-line overrides -> :class:`Config`.

OmegaConf reads the YAML and applies overrides such as ``fl.rounds=5`` or
``sites.0.mask.acceleration=8`` (values are parsed as YAML); pydantic validates the result against
the schema below. Every problem becomes one :class:`~utils.errors.UserError` line that names the key
path, e.g. ``config error: sites.0.mask.acceleration: must be >= 1 (got 0.5)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from data import masks
from data.sources import SourceOptions
from fl.strategies import ALGORITHMS
from utils.errors import UserError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """The network: the image U-Net (REFERENCE.md section 1) or the dual-domain cascade of two U-Nets."""

    kind: Literal["unet", "dual_domain"] = Field(
        "unet", description="unet (image only, the paper's) or dual_domain (k-space U-Net + image U-Net)"
    )
    cascades: int = Field(
        1, ge=1, le=16, description="dual_domain: times the two weight-shared U-Nets are applied"
    )
    kspace_loss_weight: float = Field(
        0.0, ge=0.0, description="weight of an L1 k-space loss, output vs target (meant for dual_domain)"
    )
    chans: int = Field(32, ge=1, description="channels of the first block; the paper uses 32")
    num_pool_layers: int = Field(4, ge=1, le=8, description="down/up-sampling stages; the paper uses 4")
    drop_prob: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout2d probability")
    norm: Literal["instance", "instance_affine", "batch"] = Field(
        "instance", description="normalisation layers; the paper's InstanceNorm has no parameters"
    )
    channels_last: bool = Field(
        False,
        description="keep weights and activations in channels_last memory order (a GPU fast path; "
        "slower on the CPU, and not bitwise identical to the default order)",
    )
    compile: bool = Field(
        False,
        description="torch.compile the encoder and decoder in place (parameter names unchanged); "
        "pays only when the compile time is won back over the run",
    )


class MaskConfig(BaseModel):
    """Undersampling pattern: ``kind`` plus that kind's parameters (see data/masks.py)."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="one of data.masks.mask_kinds()")
    acceleration: float | None = Field(
        None, ge=1.0, description="undersampling factor R (1 = fully sampled); kind default if null"
    )
    center_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="fully sampled centre; kind default if null"
    )
    redraw_train: bool = Field(True, description="draw a new training mask for every sample and epoch")

    def params(self) -> dict[str, Any]:
        """Keyword arguments for :func:`data.masks.create` (without ``kind``)."""
        params = dict(self.model_extra or {})
        for key in ("acceleration", "center_fraction"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        return params

    @model_validator(mode="after")
    def _check_with_registry(self) -> MaskConfig:
        try:
            masks.create(self.kind, **self.params())
        except masks.MaskParameterError as err:  # point at the parameter itself: sites.0.mask.<param>
            detail = InitErrorDetails(
                type=PydanticCustomError("mask_parameter", "{message}", {"message": str(err)}),
                loc=(err.parameter,),
                input=getattr(self, err.parameter, None) or (self.model_extra or {}).get(err.parameter),
            )
            raise ValidationError.from_exception_data("MaskConfig", [detail]) from None
        except UserError as err:
            raise ValueError(str(err)) from None
        return self


class SiteConfig(_Section):
    """One site (client) of the federation: its data, its undersampling and its batch size."""

    name: str = Field(pattern=NAME_PATTERN, description="unique site name; used in file names")
    source: SourceOptions = Field(description="where the site's images come from; `kind` picks the format")
    mask: MaskConfig
    batch_size: int = Field(8, ge=1)


class FedMRIConfig(_Section):
    """FedMRI's weighted contrastive regulariser: loss = lam * L_rec + beta * pos / neg."""

    lam: float = Field(1.0, ge=0.0, description="weight of the reconstruction loss")
    beta: float = Field(100.0, ge=0.0, description="weight of the contrastive term (the paper's lambda)")
    negatives: Literal["all", "self"] = Field(
        "all", description="previous-round encoders to push away from: every site's, or only the site's own"
    )
    start_round: int = Field(2, ge=1, description="first round (1-based) with the contrastive term")
    share: Literal["encoder", "whole", "all_but_head"] = Field(
        "encoder",
        description="what is averaged (an ablation): the encoder (the paper's), all, or all but fl.head",
    )


class FedProxConfig(_Section):
    """FedProx's proximal term mu/2 ||theta - theta_global||^2."""

    mu: float = Field(0.01, ge=0.0, description="weight of the proximal term")


class ScaffoldConfig(_Section):
    """SCAFFOLD's client control variates."""

    variates: Literal["gradients", "delta"] = Field(
        "gradients",
        description="mean raw gradient over the local steps, or the paper's option II (x - y) / (steps * lr)",
    )


class FedRepConfig(_Section):
    """FedRep's alternation: head epochs (body frozen), then fl.local_epochs body epochs (head frozen)."""

    head_epochs: int = Field(1, ge=1, description="epochs training only the head at the start of each round")


class FLMRCMConfig(_Section):
    """FL-MRCM's adversarial alignment of bottleneck features to a target site."""

    target_site: str | None = Field(
        None, description="the site whose features the others align to; null = last"
    )
    weight: float = Field(1.0, ge=0.0, description="weight of the adversarial term (the authors' is 1)")
    features: int = Field(64, ge=1, description="pooled feature vectors the target site sends each round")
    disc_lr: float = Field(1e-3, gt=0.0, description="learning rate of each source site's discriminator")
    hidden: int = Field(256, ge=1, description="hidden units of the discriminator")


class FLConfig(_Section):
    """The federation: algorithm, rounds and aggregation weights, and each algorithm's options."""

    algorithm: str = Field("fedmri", description="one of: " + ", ".join(ALGORITHMS))
    rounds: int = Field(50, ge=1)
    local_epochs: int = Field(10, ge=1, description="passes over the site's training data per round")
    client_weights: Literal["uniform", "samples"] = Field(
        "uniform", description="aggregation weights: 1/K, or proportional to training slices"
    )
    on_site_failure: Literal["abort", "skip"] = Field(
        "abort",
        description="a site whose loss or weights become non-finite: stop the run, or leave the site out of "
        "this round's aggregation and retry it next round",
    )
    parallel: Literal["sites", "data"] = Field(
        "sites",
        description="train_multi_gpu.py only: divide the sites among the ranks, or train every site "
        "data-parallel on all ranks",
    )
    site_assignment: Literal["round_robin", "size"] = Field(
        "round_robin",
        description="with parallel: sites, how sites go to ranks (size: balance training slices)",
    )
    flat_aggregation: bool = Field(
        False,
        description="average the shared tensors in place in flat float64 buffers kept between rounds, "
        "instead of allocating float64 temporaries per tensor and site; the same numbers, bit for bit",
    )
    head: Literal["stage", "conv"] = Field(
        "stage",
        description="the U-Net's head for LG-FedAvg, FedPer, FedRep and fedmri.share=all_but_head: "
        "the last decoder stage, or only the 1x1 output conv",
    )
    fedmri: FedMRIConfig = FedMRIConfig()
    fedprox: FedProxConfig = FedProxConfig()
    scaffold: ScaffoldConfig = ScaffoldConfig()
    fedrep: FedRepConfig = FedRepConfig()
    flmrcm: FLMRCMConfig = FLMRCMConfig()

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {value!r}; expected one of {', '.join(ALGORITHMS)}")
        return value


class OptimConfig(_Section):
    """Per-site optimiser (state kept across rounds) and the per-round step schedule."""

    name: Literal["rmsprop", "adam", "sgd"] = Field(
        "rmsprop", description="rmsprop (the paper's), adam, or plain sgd (SCAFFOLD's analysis)"
    )
    lr: float = Field(1e-4, gt=0.0)
    lr_step_rounds: int = Field(
        40, ge=1, description="multiply the learning rate by lr_gamma every this many rounds"
    )
    lr_gamma: float = Field(0.1, gt=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0)


class TrainerConfig(_Section):
    """Lightning Trainer settings used for every local fit and evaluation."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int = Field(1, ge=1)
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"] = "32-true"
    num_workers: int = Field(0, ge=0, description="loader worker processes per site")
    persistent_workers: bool = Field(
        True, description="keep each site's loader workers alive from round to round (num_workers > 0)"
    )
    pin_memory: bool | None = Field(
        None, description="page-locked batches for faster copies to a GPU; null = when CUDA is available"
    )
    step_progress: bool = Field(
        False, description="per-step progress bars (the round-level display is always on)"
    )


class DataConfig(_Section):
    """Options shared by every site's data pipeline."""

    cache_dir: str = Field(".cache/fedmri", description="generated/converted data; safe to delete")
    clamp: float | None = Field(
        6.0, gt=0.0, description="clamp the normalised input to [-clamp, clamp]; null = off"
    )


class Config(_Section):
    """A whole run: the sites, the model, the federated algorithm, optimisation and outputs."""

    name: str = Field(
        "fedmri", pattern=NAME_PATTERN, description="run name: outputs go to <output_dir>/<name>/"
    )
    seed: int = Field(0, ge=0)
    output_dir: str = "runs"
    paths: dict[str, str] = Field(
        default_factory=dict,
        description="named data folders that sources refer to as ${paths.NAME}; override them per machine",
    )
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    sites: list[SiteConfig] = Field(min_length=1)
    fl: FLConfig = FLConfig()
    optim: OptimConfig = OptimConfig()
    loss: Literal["mse", "l1"] = "mse"
    trainer: TrainerConfig = TrainerConfig()

    @model_validator(mode="after")
    def _algorithm_fits_model(self) -> Config:
        if self.model.kind == "dual_domain" and self.fl.algorithm == "flmrcm":
            raise ValueError(
                "fl.algorithm: flmrcm aligns the image U-Net's bottleneck features; "
                "it is not available with model.kind=dual_domain"
            )
        return self

    @field_validator("sites")
    @classmethod
    def _unique_site_names(cls, sites: list[SiteConfig]) -> list[SiteConfig]:
        names = [s.name for s in sites]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"site names must be unique; repeated: {', '.join(duplicates)}")
        return sites

    @model_validator(mode="after")
    def _algorithm_fits_the_sites(self) -> Config:
        names = [s.name for s in self.sites]
        if self.fl.algorithm == "flmrcm":
            target = self.fl.flmrcm.target_site
            if target is None:
                self.fl.flmrcm.target_site = names[-1]
            elif target not in names:
                raise ValueError(f"fl.flmrcm.target_site: {target!r} is not a site; expected one of {names}")
            if len(names) < 2:
                raise ValueError("fl.algorithm: flmrcm needs a target site and at least one other site")
        if self.fl.algorithm == "transfer" and len(names) < 2:
            raise ValueError("fl.algorithm: transfer trains on the other sites, so it needs at least two")
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
    overrides and validate.

    Raises:
        UserError: unreadable file, malformed override, or any invalid value (naming the key path).
    """
    if base is not None:
        raw = OmegaConf.create(base)
    else:
        raw = OmegaConf.create(_read_yaml(path) if path is not None else {})
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"override {item!r}: expected key.path=value, e.g. fl.rounds=5")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise UserError(f"override {key}: cannot parse value {text!r} ({_first_line(err)})") from None
        try:
            OmegaConf.update(raw, key, value, merge=False)
        except (OmegaConfBaseException, TypeError, IndexError, ValueError) as err:
            raise UserError(f"override {key}: {_first_line(err)}") from None
    try:
        data = OmegaConf.to_container(raw, resolve=True)
    except OmegaConfBaseException as err:
        raise UserError(f"config {path}: {_first_line(err)}") from None
    return validate_config(data)


def validate_config(data: Any) -> Config:
    """Validate a plain mapping as a :class:`Config`, turning every problem into one UserError line."""
    if not isinstance(data, dict):
        raise UserError(f"config: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, data)) from None


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from utils.checkpoint import atomic_write_text

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
        parts.append(f"{path}: {_describe(item)}" if path else _describe(item))
    return "config error: " + "; ".join(parts)


def _read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config {path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"config {path}: not valid YAML ({_first_line(err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {path}: expected a mapping of sections at the top level")
    return data


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
        parts.append(str(part))
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
            return f"must be {op} {limit} (got {value!r})"
    if kind == "literal_error":
        return f"got {value!r}; expected {ctx.get('expected', '?')}"
    if kind == "union_tag_invalid":
        return f"unknown kind {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "too_short":
        return "must not be empty"
    msg = item["msg"].removeprefix("Value error, ")
    if kind.endswith(("_type", "_parsing")):
        return f"{msg[0].lower()}{msg[1:]} (got {value!r})"
    return msg


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
