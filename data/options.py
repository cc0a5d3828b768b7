"""The ``data`` and ``sites`` sections of a config: where data comes from, how it is undersampled."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from data.masks import MaskOptions
from data.sources import SourceOptions

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NAME_MAX = 64  # run and site names become file names (best_<site>.ckpt) and table cells


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SiteOptions(_Section):
    """One site (client) of the federation: its data, its undersampling and its batch size."""

    name: str = Field(
        pattern=NAME_PATTERN, max_length=NAME_MAX, description="unique site name; used in file names"
    )
    source: SourceOptions = Field(description="where the site's images come from; `kind` picks the format")
    mask: MaskOptions = Field(description="undersampling pattern; `kind` picks it (see data/masks/)")
    batch_size: int = Field(8, ge=1, description="slices per training step at this site")


class DataOptions(_Section):
    """Options shared by every site's data pipeline."""

    cache_dir: str = Field(".cache/fedmri", description="generated/converted data; safe to delete")
    clamp: float | None = Field(
        6.0, gt=0.0, description="clamp the normalised input to [-clamp, clamp]; null = off"
    )
    sample_cache_mb: float = Field(
        1024.0,
        ge=0.0,
        description="memory per site for samples whose mask never changes (validation and test, and training "
        "without redraw_train), kept after their first use instead of being recomputed every round; 0 = off; "
        "only with trainer.num_workers: 0 (each worker would keep a copy)",
    )
