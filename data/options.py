"""The ``data`` and ``sites`` sections of a config: where data comes from, how it is undersampled."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from data import masks
from data.sources import SourceOptions
from utils.errors import UserError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MaskConfig(BaseModel):
    """Undersampling pattern: ``kind`` plus that kind's parameters (see data/masks.py)."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="one of data.masks.mask_kinds()")
    acceleration: float | None = Field(
        None, ge=1.0, description="undersampling factor R (1 = fully sampled); kind default if null"
    )
    center_fraction: float | None = Field(None, gt=0.0, le=1.0, description="fully sampled centre; kind default if null")
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


class SiteOptions(_Section):
    """One site (client) of the federation: its data, its undersampling and its batch size."""

    name: str = Field(pattern=NAME_PATTERN, description="unique site name; used in file names")
    source: SourceOptions = Field(description="where the site's images come from; `kind` picks the format")
    mask: MaskConfig
    batch_size: int = Field(8, ge=1)


class DataOptions(_Section):
    """Options shared by every site's data pipeline."""

    cache_dir: str = Field(".cache/fedmri", description="generated/converted data; safe to delete")
    clamp: float | None = Field(6.0, gt=0.0, description="clamp the normalised input to [-clamp, clamp]; null = off")
