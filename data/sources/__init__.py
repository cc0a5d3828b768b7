"""Registry of data sources: one module per on-disk format, chosen by ``source.kind`` in a config.

Adding a dataset = one new module with an options model (a pydantic model whose ``kind`` field is a
``Literal``) and a :class:`~data.sources.base.Source` subclass, plus one line in ``SOURCES``.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from data.sources.base import KspaceSlice, SliceData, Source, SourceContext, VolumeInfo
from data.sources.dicom import DicomOptions, DicomSource
from data.sources.fastmri import FastMRIOptions, FastMRISource
from data.sources.folder import FolderOptions, FolderSource
from data.sources.nifti import BratsOptions, BratsSource, IxiOptions, IxiSource
from data.sources.synthetic import SyntheticOptions, SyntheticSource

SOURCES: dict[str, tuple[type, type[Source]]] = {
    "synthetic": (SyntheticOptions, SyntheticSource),
    "fastmri": (FastMRIOptions, FastMRISource),
    "brats": (BratsOptions, BratsSource),
    "ixi": (IxiOptions, IxiSource),
    "dicom": (DicomOptions, DicomSource),
    "folder": (FolderOptions, FolderSource),
}

SourceOptions = Annotated[Union[tuple(opts for opts, _ in SOURCES.values())], Field(discriminator="kind")]  # noqa: UP007


def build_source(options, context: SourceContext) -> Source:
    """Instantiate the source that ``options.kind`` names."""
    _, source_cls = SOURCES[options.kind]
    return source_cls(options, context)


__all__ = [
    "SOURCES",
    "KspaceSlice",
    "SliceData",
    "Source",
    "SourceContext",
    "SourceOptions",
    "VolumeInfo",
    "build_source",
]
