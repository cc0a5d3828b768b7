"""The mask kinds by name: their options union (what a site's ``mask`` section holds) and the builders."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from data.masks.base import MaskFunc, MaskOptionsBase
from data.masks.equispaced_1d import Equispaced1D, Equispaced1DOptions
from data.masks.file import FileMask, FileMaskOptions
from data.masks.poisson_2d import Poisson2D, Poisson2DOptions
from data.masks.radial_2d import Radial2D, Radial2DOptions
from data.masks.random_1d import Random1D, Random1DOptions
from data.masks.random_2d import Random2D, Random2DOptions
from data.masks.uniform_1d import Uniform1D, Uniform1DOptions
from utils.errors import UserError

MASKS: dict[str, tuple[type[MaskOptionsBase], type]] = {
    "random_1d": (Random1DOptions, Random1D),
    "equispaced_1d": (Equispaced1DOptions, Equispaced1D),
    "uniform_1d": (Uniform1DOptions, Uniform1D),
    "random_2d": (Random2DOptions, Random2D),
    "radial_2d": (Radial2DOptions, Radial2D),
    "poisson_2d": (Poisson2DOptions, Poisson2D),
    "file": (FileMaskOptions, FileMask),
}

MaskOptions = Annotated[Union[tuple(opts for opts, _ in MASKS.values())], Field(discriminator="kind")]  # noqa: UP007

_OPTIONS = TypeAdapter(MaskOptions)


def mask_kinds() -> list[str]:
    """The registered mask kinds, in the order of the reference table in :mod:`data.masks`."""
    return list(MASKS)


def build_mask(options: MaskOptionsBase) -> MaskFunc:
    """The mask function that validated ``options`` describe (the pattern's parameters are the options)."""
    _, pattern_cls = MASKS[options.kind]
    return pattern_cls(**options.model_dump(exclude={"kind", "redraw_train", "fixed"}))


def create(kind: str, **params: Any) -> MaskFunc:
    """The mask function of ``kind`` with ``params``, validated as :data:`MaskOptions`; for scripts and tests.

    ``redraw_train`` and ``fixed`` are accepted like any option but do not change the mask function.

    Raises:
        UserError: an unknown kind (the message lists the known ones), or an unknown, missing or
            out-of-range parameter (the message names it).
    """
    if not isinstance(kind, str) or kind not in MASKS:
        raise UserError(f"mask kind {kind!r} is unknown; expected one of: {', '.join(MASKS)}")
    try:
        options = _OPTIONS.validate_python({"kind": kind, **params})
    except ValidationError as err:
        raise UserError(_describe(kind, err.errors()[0])) from None
    return build_mask(options)


def _describe(kind: str, error: Any) -> str:
    """One line for the first validation error of ``kind``'s options, naming the parameter."""
    name = ".".join(str(part) for part in error["loc"][1:])  # loc[0] is the union's tag
    if error["type"] == "mask_option":
        return error["msg"]
    if error["type"] == "extra_forbidden":
        accepted = [field for field in MASKS[kind][0].model_fields if field != "kind"]
        return f"mask {kind}: unknown parameter {name!r}; {kind} accepts: {', '.join(accepted)}"
    if error["type"] == "missing":
        return f"mask {kind}: parameter {name!r} is required"
    message = error["msg"]
    return f"mask {kind}: parameter {name!r}: {message[0].lower()}{message[1:]} (got {error['input']!r})"
