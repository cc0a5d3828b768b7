"""What every mask kind shares: the mask function type, the options every kind takes, the pattern base,
and the geometry of centred k-space (centre columns, rows, the normalised distance from DC).

Each kind's module builds on these: an options model derived from :class:`MaskOptionsBase` (the generated
kinds from :class:`PatternOptions` or :class:`Pattern2DOptions`) and a frozen dataclass mask function
(the generated kinds derive from :class:`Pattern` and implement ``_draw``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticUseDefault

MaskFunc = Callable[[tuple[int, int], int], np.ndarray]


def acceleration_of(mask: np.ndarray) -> float:
    """Measured acceleration of a mask: its number of points over the number sampled (inf if none)."""
    sampled = int(np.count_nonzero(mask))
    return mask.size / sampled if sampled else math.inf


def frozen(array: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so no caller can change what later calls return."""
    array.flags.writeable = False
    return array


def check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """(H, W) as two positive ints."""
    height, width = (int(n) for n in shape)
    if height < 1 or width < 1:
        raise ValueError(f"mask shape must be two positive sizes, got {tuple(shape)}")
    return height, width


def field_error(model: BaseModel, field: str, message: str) -> ValidationError:
    """A validation error located at ``field``, so that a config error names ``sites.N.mask.<field>``."""
    detail = InitErrorDetails(
        type=PydanticCustomError("mask_option", "{message}", {"message": message}),
        loc=(field,),
        input=getattr(model, field),
    )
    return ValidationError.from_exception_data(type(model).__name__, [detail])


# A finite real number; ints become floats, while strings and bools are refused (no lax coercion).
Real = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class MaskOptionsBase(BaseModel):
    """What every mask kind's options share: the ``kind`` tag and whether training masks are redrawn."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="the mask kind; one of mask_kinds()")
    redraw_train: bool = Field(True, description="draw a new training mask for every sample and epoch")
    fixed: bool = Field(
        False,
        description="one mask per site, drawn from the seed, for every training sample and every "
        "validation and test slice (the FedMRI paper's fixed per-client mask); overrides redraw_train",
    )


class PatternOptions(MaskOptionsBase):
    """Options of the generated kinds: acceleration and centre, and the check that the two fit together."""

    acceleration: Real = Field(4.0, ge=1.0, description="undersampling factor R (1 = fully sampled)")
    center_fraction: Real = Field(
        0.08,
        gt=0.0,
        le=1.0,
        description="always-sampled centre: the fraction of columns (1D) or the radius relative to the "
        "half-size (2D)",
    )

    @field_validator("acceleration", "center_fraction", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any) -> Any:
        """Null keeps the kind's default, as configs written before the typed options used it."""
        if value is None:
            raise PydanticUseDefault()
        return value

    def _centre_share(self) -> float:
        """The fraction of k-space the always-sampled centre takes."""
        return self.center_fraction

    @model_validator(mode="after")
    def _centre_fits(self) -> PatternOptions:
        """Refuse a centre that alone samples more than 1/R of k-space."""
        if self._centre_share() * self.acceleration > 1.0 + 1e-9:
            raise field_error(
                self,
                "center_fraction",
                f"mask {self.kind}: center_fraction {self.center_fraction:g} keeps more than "
                f"1/acceleration = 1/{self.acceleration:g} of k-space; lower one of them",
            )
        return self


class Pattern2DOptions(PatternOptions):
    """Options of the 2D kinds, whose always-sampled centre is an ellipse of radius ``center_fraction``."""

    def _centre_share(self) -> float:
        return math.pi / 4 * self.center_fraction**2


@dataclass(frozen=True)
class Pattern:
    """The generated kinds' shared parameters and their R = 1 shortcut; built from validated options."""

    acceleration: float
    center_fraction: float

    def __call__(self, shape: tuple[int, int], seed: int) -> np.ndarray:
        """The (H, W) bool mask for ``shape`` drawn from ``seed`` (a non-negative int)."""
        height, width = check_shape(shape)
        if self.acceleration == 1.0:
            return np.ones((height, width), dtype=bool)
        return self._draw(height, width, seed)

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        raise NotImplementedError


# ------------------------------------------------------------------------------- shared geometry


def centre_columns(width: int, center_fraction: float) -> tuple[int, int]:
    """(first column, count) of the fully sampled centre block; it always contains DC (width // 2)."""
    count = min(width, max(1, round(width * center_fraction)))
    return (width - count + 1) // 2, count


def rows(columns: np.ndarray, height: int) -> np.ndarray:
    """Repeat a (W,) column selection over ``height`` rows into a fresh (H, W) array."""
    return np.broadcast_to(columns, (height, columns.size)).copy()


@lru_cache(maxsize=32)
def radius_map(height: int, width: int) -> np.ndarray:
    """(H, W) normalised distance from DC: 1 at the middle of each edge, an ellipse on non-square grids."""
    y = (np.arange(height) - height // 2) / (height / 2)
    x = (np.arange(width) - width // 2) / (width / 2)
    return frozen(np.sqrt(y[:, None] ** 2 + x[None, :] ** 2))
