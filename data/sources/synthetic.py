"""A simulated multi-contrast brain MRI site as a data source: its options, subjects and cached volumes.

The images come from :mod:`data.simulation` (the ICBM152 2009a template's anatomy, Fonov et al. 2011,
under one of four site profiles after the clients of C.-M. Feng et al., IEEE TMI 2022). Each volume (one
subject in one contrast) is generated once and stored in the shared
:class:`~data.sources.volume_cache.VolumeCache` under ``<cache_dir>/volumes/``, keyed by everything it is
generated from (:meth:`SyntheticSource.identity`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from data.fourier import fft2c
from data.simulation import GENERATOR_VERSION, PROFILES, TISSUES, Contrast, ProfileName, simulate_subject
from data.simulation.anatomy import site_maps
from data.simulation.imaging import background_phase, coil_sensitivities
from data.simulation.profiles import HEAD_LAYERS
from data.sources.base import SPLITS, KspaceSlice, Source, SourceContext, Split, VolumeInfo
from data.sources.volume_cache import CachedVolume, VolumeCache, read_cached_slice
from utils.errors import UserError
from utils.resources import available_memory, folder_bytes, free_disk, human
from utils.seeding import stable_seed

logger = logging.getLogger(__name__)

INDEX_BYTES_PER_VOLUME = 400  # a VolumeInfo, a CachedVolume, a subject name and dict slots, roughly


class SubjectCounts(BaseModel):
    """How many simulated subjects each split gets."""

    model_config = ConfigDict(extra="forbid")

    train: int = Field(8, ge=1, description="training subjects")
    val: int = Field(2, ge=1, description="validation subjects")
    test: int = Field(2, ge=1, description="test subjects")


class SyntheticOptions(BaseModel):
    """A simulated brain MRI site: no files needed, generated once and cached."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["synthetic"] = "synthetic"
    profile: ProfileName = Field(
        description="the site's protocol and scanner preset, after the paper's four clients"
    )
    size: int = Field(
        96, ge=32, le=1024,
        description="image matrix size (square), pixels; at most 1024 (the paper's largest client matrix is "
        "320; a larger one only makes the simulation minutes long)",
    )  # fmt: skip
    subjects: SubjectCounts = Field(default_factory=SubjectCounts, description="subjects per split")
    slices_per_subject: int = Field(
        16,
        ge=1,
        le=160,
        description="slices per volume, centred on the lateral ventricles (axial, coronal) or on the midline "
        "(sagittal)",
    )
    contrasts: list[Contrast] = Field(
        default_factory=lambda: ["t1", "t2"], min_length=1, description="spin-echo contrasts: one volume each"
    )
    lesions: bool | None = Field(
        None, description="simulate tumours (oedema around a necrotic core); null = the profile's default"
    )
    noise_scale: float = Field(1.0, ge=0.0, description="multiplies the profile's noise; 0 = noise-free")
    realism: Literal["template", "varied"] = Field(
        "template",
        description="template: every subject is the template's anatomy in the template's pose, at the "
        "profile's noise (the images the simulator has always made); varied (ours): each subject also gets "
        "its own in-plane orientation (90-degree turns, flips), head size and position in the field of view, "
        "finer cortical deformation and texture, noise level and acquisition matrix (Gibbs ringing)",
    )
    noise_range: tuple[float, float] | None = Field(
        None,
        description="(ours) each subject's noise is the profile's times noise_scale times a factor drawn "
        "log-uniformly in [low, high]; null = the realism's own (template: 1, varied: 0.5-2)",
    )
    stripped_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="(ours) the chance that a subject is served skull-stripped (the brain only, zero outside "
        "it), as preprocessed exports and many public sets are, drawn per subject; a skull-stripped profile "
        "strips every subject",
    )
    export_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="(ours) the chance that a subject is served as an 8-bit export, drawn per subject: "
        "everything outside the head set to exactly zero and the intensities rounded to 256 levels of the "
        "volume's range, as thresholded DICOM-to-image conversions and older archives store scans",
    )
    folded_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="(ours) the chance that a subject's cortex is folded into gyri and sulci of its own, "
        "drawn per subject: thin sheets of CSF 5-20 mm deep, each lined by 2-3.5 mm of grey matter around "
        "white matter, where the template (an average of many brains) has a smooth, blurred cortical "
        "ribbon; 0 = the template's cortex, the images the simulator has always made",
    )
    receive_channels: tuple[int, int] | None = Field(
        None,
        description="(ours) [low, high]: each subject is received by a number of channels drawn uniformly "
        "in the range (both ends included) and its magnitude image is their root sum of squares, so "
        "the noise floor outside the head rises with the channels (noncentral chi noise, about 3.9x the "
        "noise's std for eight channels, 1.25x for one) while the noise inside the head stays; null = one "
        "channel (Rician noise), the images the simulator has always made",
    )
    head_scale: tuple[float, float] | None = Field(
        None,
        description="(ours; realism: varied) [low, high]: each subject's head size relative to the "
        "template's in the site's field of view, drawn uniformly in the range; above about 1.2 the head "
        "fills the field of view and runs off its edges, as in scans framed tightly on the head (a smaller "
        "field of view at the same matrix); null = 0.8-1.2, the range varied has always drawn",
    )
    matrix_range: tuple[float, float] | None = Field(
        None,
        description="(ours; realism: varied) [low, high]: the fraction of k-space acquired along each "
        "axis, drawn uniformly per subject; below 1 the image is blurred, with Gibbs ringing at edges, as a "
        "scan acquired at a smaller matrix and interpolated to the site's; null = 0.7-1.0, the range "
        "varied has always drawn",
    )
    planes: list[Literal["axial", "coronal", "sagittal"]] = Field(
        default_factory=lambda: ["axial"],
        min_length=1,
        description="(ours) the planes the slices may lie in; each subject's slices lie in one of them, "
        "drawn per subject with equal chances. axial: the simulator's original slices, centred on the "
        "lateral ventricles; coronal (centred on the ventricles) and sagittal (from the midline out) "
        "slices show the head from brainstem to vertex, as scanners that acquire in any plane store it",
    )
    phase: bool = Field(
        False,
        description="false: magnitude images, k-space from the magnitude as in the paper; true (ours): "
        "complex images with a smooth phase of each slice's own, so k-space is not conjugate-symmetric",
    )
    coils: int = Field(
        0,
        ge=0,
        le=32,
        description="0: one image per slice; >= 2 (ours): multi-coil k-space, the image weighted by a ring "
        "of smooth complex coil sensitivities whose root sum of squares is 1 (the target is the RSS)",
    )

    @field_validator("receive_channels")
    @classmethod
    def _ordered_channels(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1] <= 64:
            raise ValueError(
                f"receive_channels must be [low, high] with 1 <= low <= high <= 64 (got {list(value)})"
            )
        return value

    @field_validator("noise_range", "head_scale", "matrix_range")
    @classmethod
    def _ordered_range(
        cls, value: tuple[float, float] | None, info: ValidationInfo
    ) -> tuple[float, float] | None:
        top = {"head_scale": 3.0, "matrix_range": 1.0}.get(info.field_name or "", float("inf"))
        if value is not None and not 0.0 < value[0] <= value[1] <= top:
            bound = "" if top == float("inf") else f" <= {top:g}"
            raise ValueError(
                f"{info.field_name} must be [low, high] with 0 < low <= high{bound} (got {list(value)})"
            )
        return value

    @model_validator(mode="after")
    def _ranges_of_varied(self) -> SyntheticOptions:
        for name in ("head_scale", "matrix_range"):
            if getattr(self, name) is not None and self.realism != "varied":
                raise ValueError(
                    f"{name} is drawn per subject under realism: varied only (realism is {self.realism})"
                )
        return self

    @field_validator("planes", "contrasts")
    @classmethod
    def _no_repeats(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"{info.field_name} must not repeat (got {value})")
        return value


def subject_names(counts: SubjectCounts) -> dict[Split, list[str]]:
    """Subject ids of each split: numbered across splits, so no subject is in two splits."""
    names: dict[Split, list[str]] = {}
    start = 0
    for split in SPLITS:
        count = getattr(counts, split)
        names[split] = [f"sub-{i:03d}" for i in range(start, start + count)]
        start += count
    return names


@lru_cache(maxsize=1)
def _library_versions() -> dict[str, str | None]:
    """Versions of the libraries whose numerics or data the generated images depend on."""
    versions: dict[str, str | None] = {}
    for name in ("numpy", "scipy", "nilearn"):  # nilearn ships the template
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class SyntheticSource(Source):
    """A simulated site: generates its volumes into the shared volume cache (once) and serves slices."""

    def __init__(self, options: SyntheticOptions, context: SourceContext) -> None:
        self.options = options
        self.context = context
        self._volumes: dict[str, list[VolumeInfo]] = {}
        self._entries: dict[str, CachedVolume] = {}  # volume name -> where its array lies in the cache

    @property
    def cache(self) -> VolumeCache:
        """The shared volume cache of the run's ``data.cache_dir``."""
        return VolumeCache(Path(self.context.cache_dir) / "volumes")

    def identity(self, subject: str, contrast: str) -> dict:
        """Everything one generated volume depends on: the key of its cache entry.

        The key changes, and the volume is generated again, when any of these change: the generator
        version (bumped with any change to the simulation code; it also reseeds the images), the run's
        seed, the site's name, the subject, the contrast, any option of the site (even those that leave
        this volume alone, such as ``contrasts``; ``planes``, ``export_fraction``, ``receive_channels``,
        ``head_scale``, ``matrix_range`` and ``folded_fraction`` only when they are not the default, so
        that caches written before the options existed stay valid), the profile's and tissue tables'
        values, or the numpy, scipy or nilearn version. The volume cache's own ``CACHE_VERSION`` is part
        of every key.
        """
        return {
            "kind": "synthetic",
            "generator": GENERATOR_VERSION,
            "seed": self.context.seed,
            "site": self.context.site,
            "subject": subject,
            "contrast": contrast,
            "options": self.options.model_dump(mode="json", exclude=self._new_defaults()),
            "profile": dataclasses.asdict(PROFILES[self.options.profile]),
            "tissues": TISSUES,
            "head_layers": HEAD_LAYERS,
            "libraries": _library_versions(),
        }

    def _new_defaults(self) -> set[str]:
        """Options added after caches existed, left out of the key while at their defaults."""
        defaults = {
            "planes": ["axial"], "export_fraction": 0.0, "receive_channels": None, "head_scale": None,
            "matrix_range": None, "folded_fraction": 0.0,
        }  # fmt: skip
        return {name for name, value in defaults.items() if getattr(self.options, name) == value}

    def entry_key(self, subject: str, contrast: str) -> str:
        """The name of one volume's entry in the cache (``<key>.npy`` and ``<key>.json``)."""
        return self.cache.key((), self.identity(subject, contrast))

    def prepare(self) -> None:
        """Index the site's volumes, generating into the cache every subject that is not there yet."""
        cache = self.cache
        self.check_fits_machine()
        shape = (self.options.slices_per_subject, self.options.size, self.options.size)
        maps: dict[str, np.ndarray] | None = None  # the template at the site's resolution, when needed
        volumes: dict[str, list[VolumeInfo]] = {}
        entries: dict[str, CachedVolume] = {}
        generated, start = 0, time.perf_counter()
        for split, subjects in subject_names(self.options.subjects).items():
            volumes[split] = []
            for subject in subjects:
                keys = {c: self.entry_key(subject, c) for c in self.options.contrasts}
                found = {c: _lookup(cache, key, shape) for c, key in keys.items()}
                missing = [c for c, hit in found.items() if hit is None]
                if missing:
                    if maps is None:
                        maps = site_maps(
                            PROFILES[self.options.profile], self.options.size, tuple(self.options.planes)
                        )
                    sim = simulate_subject(self.options, self.context.seed, self.context.site, subject, maps)
                    for contrast in missing:
                        found[contrast] = self._store(cache, keys[contrast], sim.images[contrast])
                    generated += 1
                for contrast in self.options.contrasts:
                    info = VolumeInfo(f"{subject}_{contrast}", subject, contrast, shape[0], shape[1:])
                    path, offset, dtype, _ = found[contrast]
                    volumes[split].append(info)
                    entries[info.name] = CachedVolume(path, offset, dtype, shape, 0)
        if generated:
            logger.info(
                "generated %d subject(s) of synthetic site %r (profile %s) in %.1f s -> %s",
                generated,
                self.context.site,
                self.options.profile,
                time.perf_counter() - start,
                cache.folder,
            )
        self._volumes, self._entries = volumes, entries

    def check_fits_machine(self) -> None:
        """Refuse, before anything is generated, a site whose volumes cannot fit this machine.

        The generated volumes take subjects x contrasts x slices x size x size x 4 bytes (float32): they must
        fit the free disk of ``data.cache_dir`` plus what its volume cache already holds (cached volumes
        are not written again); one subject's volumes are generated in memory at once, and the index keeps
        a few hundred bytes per volume, so both must fit the available RAM.
        """
        o = self.options
        subjects = o.subjects.train + o.subjects.val + o.subjects.test
        per_subject = len(o.contrasts) * o.slices_per_subject * o.size * o.size * 4
        total = subjects * per_subject
        terms = (
            f"{subjects} subjects x {len(o.contrasts)} contrasts x {o.slices_per_subject} slices x "
            f"{o.size} x {o.size} x 4 bytes"
        )
        where = f"sites.{self.context.site}.source"
        memory = available_memory()
        if per_subject > memory:
            raise UserError(
                f"{where}.size: one subject's volumes ({len(o.contrasts)} contrasts x {o.slices_per_subject} "
                f"slices x {o.size} x {o.size} x 4 bytes = {human(per_subject)}) exceed the available "
                f"memory ({human(memory)})"
            )
        index = subjects * len(o.contrasts) * INDEX_BYTES_PER_VOLUME
        if index > memory:
            raise UserError(
                f"{where}.subjects: the index of {subjects * len(o.contrasts)} volumes (about "
                f"{human(index)}) exceeds the available memory ({human(memory)})"
            )
        room = free_disk(self.cache.folder) + folder_bytes(self.cache.folder)
        if total > room:
            raise UserError(
                f"{where}: the generated volumes ({terms} = {human(total)}) exceed the free disk of "
                f"data.cache_dir ({human(room)} with what the volume cache already holds)"
            )

    @staticmethod
    def _store(cache: VolumeCache, key: str, image: np.ndarray) -> tuple[str, int, str, tuple]:
        try:
            return cache.store(key, (), image.astype(np.float32, copy=False))
        except OSError as err:
            raise UserError(
                f"data.cache_dir: cannot write the volume cache {cache.folder} ({err.strerror or err})"
            ) from None

    def volumes(self, split: Split) -> list[VolumeInfo]:
        """The volumes of one split: each subject's contrasts in the configured order."""
        self._require_prepared()
        if split not in self._volumes:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return list(self._volumes[split])

    def read_slice(self, volume: VolumeInfo, index: int) -> np.ndarray | KspaceSlice:
        """Slice ``index`` of ``volume``: a float32 magnitude image (H, W), complex64 with ``phase``, or
        multi-coil k-space (C, H, W) with ``coils``."""
        self._require_prepared()
        entry = self._entries.get(volume.name)
        if entry is None:
            raise UserError(f"synthetic site {self.context.site!r} has no volume {volume.name!r}")
        if not 0 <= index < volume.num_slices:
            raise IndexError(f"slice {index} out of range: {volume.name!r} has {volume.num_slices} slices")
        image = read_cached_slice(entry, index)
        key = (GENERATOR_VERSION, self.context.seed, self.context.site, volume.name, index)
        if self.options.phase:
            phase = background_phase(np.random.default_rng(stable_seed(*key, "phase")), image.shape)
            image = (image * np.exp(1j * phase)).astype(np.complex64)
        if self.options.coils < 2:
            return image
        maps = coil_sensitivities(
            np.random.default_rng(stable_seed(*key, "coils")), self.options.coils, image.shape
        )
        kspace = fft2c(torch.from_numpy(maps * image)).numpy()
        return KspaceSlice(kspace=kspace.astype(np.complex64), target=None, crop=tuple(image.shape))

    def _require_prepared(self) -> None:
        if not self._volumes:
            raise RuntimeError("SyntheticSource.prepare() must be called before reading volumes")


def _lookup(cache: VolumeCache, key: str, shape: tuple[int, int, int]) -> tuple[str, int, str, tuple] | None:
    """A cached volume of the expected float32 ``shape``, or None if absent, incomplete or unexpected."""
    found = cache.lookup(key, ())
    if found is None or np.dtype(found[2]) != np.float32 or found[3] != shape:
        return None
    return found
