"""``file``: a fixed mask read from a ``.npy`` or ``.mat`` file (the FedMRI authors' format), and options."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from data.masks.base import MaskOptionsBase, Real, acceleration_of, check_shape, field_error, rows
from data.masks.readers import load_mask_file
from utils.errors import UserError

TOLERANCE = 0.1  # a file mask's acceleration must be this close (relative) to a requested one


def _absolute(path: str) -> str:
    """A mask file's path with ``~`` expanded, made absolute (so that worker processes find it too)."""
    return str(Path(path).expanduser().absolute())


def _acceleration_mismatch(path: str, mask: np.ndarray, requested: float | None) -> str | None:
    """Why a file's mask does not have the ``requested`` acceleration (within 10 %), or None if it does."""
    measured = acceleration_of(mask)
    if requested is None or abs(measured / requested - 1) <= TOLERANCE:
        return None
    return (
        f"mask file {path}: its acceleration is {measured:.3g}, not the requested "
        f"{requested:g}; set acceleration to match the file"
    )


class FileMaskOptions(MaskOptionsBase):
    """Options of ``file``, a fixed mask read from a file; the file is read and checked on validation."""

    kind: Literal["file"] = "file"
    path: str = Field(min_length=1, description="a .npy array, or a .mat file with variable 'mask'")
    acceleration: Real | None = Field(
        None,
        ge=1.0,
        description="the file's acceleration, checked to within 10 % so reports quoting it are true; "
        "null = not checked",
    )

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _file_fits(self) -> FileMaskOptions:
        """Read the file now, so that a bad file fails the config rather than a running job."""
        path = _absolute(self.path)
        try:
            mask = load_mask_file(path)
        except UserError as err:
            raise field_error(self, "path", str(err)) from None
        mismatch = _acceleration_mismatch(path, mask, self.acceleration)
        if mismatch:
            raise field_error(self, "acceleration", mismatch)
        return self


@dataclass(frozen=True)
class FileMask:
    """A fixed mask read from ``path``: a ``.npy`` array or a ``.mat`` file with variable ``mask``.

    The FedMRI authors' format is a ``.mat`` file whose ``mask`` is a centred (H, W) array; MATLAB v7.3
    files are read with h5py if it is installed. 2D arrays must match the image shape exactly (nothing is
    resized); 1D arrays (W,), or MATLAB row/column vectors, select columns. Nonzero means sampled. The path
    is made absolute, the file is read once per process (later edits to it are not seen), and the seed
    is ignored. If ``acceleration`` is given, the file's measured acceleration must be within
    10 % of it, so that reports quoting it are true.
    """

    path: str
    acceleration: float | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _absolute(self.path))
        mismatch = _acceleration_mismatch(self.path, load_mask_file(self.path), self.acceleration)
        if mismatch:
            raise UserError(mismatch)

    def __call__(self, shape: tuple[int, int], seed: int) -> np.ndarray:
        """The file's mask as a fresh (H, W) bool array; UserError if its shape does not fit ``shape``."""
        height, width = check_shape(shape)
        mask = load_mask_file(self.path)
        expected = (width,) if mask.ndim == 1 else (height, width)
        if mask.shape != expected:
            raise UserError(
                f"mask file {self.path}: mask shape {mask.shape} does not match the image shape "
                f"{(height, width)} (expected {expected}); masks are never resized"
            )
        return rows(mask, height) if mask.ndim == 1 else mask.copy()
