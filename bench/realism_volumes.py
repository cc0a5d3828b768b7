"""The real brain MR volumes of the transfer check (bench/realism.py): what each is, where it comes
from and how it is read (bench/realism_sites.py fits them to the simulated sites).

Every volume ships inside a package installed by a package manager: from PyPI by
``requirements-dev.txt``, or from Debian 12's main archive by ``apt-get install mricron-data
insighttoolkit5-examples`` (bench/realism_debian.py: where those files are, and FEDMRI_DEBIAN_ROOT for
packages unpacked without root). Nothing is downloaded at run time. Without a Debian package the check
says so in one line and goes on with the volumes it has. Two sets are kept apart: the test set (the
final measurement, never used to choose simulator settings) and the tuning set (nibabel's example EPI
series, for choosing them). ``NOT_USED`` (bench/realism_searched.py) lists every other candidate that
was looked at and why it is not in either set.

    python bench/realism_volumes.py      # rewrites docs/results/realism/REAL_VOLUMES.md from this module

A test checks that the committed REAL_VOLUMES.md is what this module writes, so the table cannot
drift from the lists below.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from realism_debian import (  # noqa: E402
    DEBIAN_FOLDERS,
    INSTALL,
    ROOT_VARIABLE,
    debian_folder,
    is_debian,
    read_metaimage,
)
from realism_searched import NOT_USED  # noqa: E402

TABLE_PATH = Path(__file__).resolve().parents[1] / "docs" / "results" / "realism" / "REAL_VOLUMES.md"
SCAN, AVERAGE = "single-subject scan", "population average"
REPEATED = "one subject, repeated scans averaged"  # less noise than one scan; not a population average


@dataclasses.dataclass(frozen=True)
class RealVolume:
    """A real brain MR volume shipped inside an installed package (read from disk, never downloaded)."""

    package: str  # the installed package that ships the file (PyPI, or Debian 12: realism_debian.py)
    path: str  # the file, relative to the package's folder (a Debian package's: DEBIAN_FOLDERS)
    pixel_mm: float  # in-plane pixel size
    skull_stripped: bool  # brain only (zero background): the only kind a skull-stripped site is tested on
    slices: tuple[int, int] | None = None  # slices kept along the last axis, [start, stop); None = all
    frame: int = 0  # the volume of a 4D series
    turns: int = 0  # in-plane quarter turns: the same scan stored in another orientation
    matrix: float = 1.0  # fraction of k-space kept along each axis: the same scan from a smaller matrix
    step: int = 1  # every step-th slice of ``slices``
    kind: str = SCAN  # one scan of one subject, one subject's scans averaged, or a population average
    contrast: str = ""  # what the image shows, for the table
    licence: str = ""  # the licence the package ships the file under
    note: str = ""  # anything a reader of the numbers should know (estimated pixel size, ...)
    mask: str = ""  # a brain mask beside the file: the volume is set to zero where the mask is zero
    stripped_from: str = ""  # the set's whole-head volume of the same scan: whole-head sites test on
    # that one instead, so that no site is tested on one scan twice
    stored: tuple[int, int] | None = None  # the stored in-plane matrix, for the table: given for a
    # Debian package's volume, so the table is written without the package (a test reads the file)


# The final measurement: the volumes every number of RESULTS.md's "Transfer to real scans" comes from.
_DIPY = "dipy's (BSD-3-Clause)"
_ITK = "insighttoolkit5-examples"
# Each Debian package's licence, as its /usr/share/doc/<package>/copyright states it for its files (*).
_MRICRON = "BSD-3-Clause (/usr/share/doc/mricron-data/copyright)"
_ITK_LICENCE = "Apache-2.0 (/usr/share/doc/insighttoolkit5-examples/copyright)"
TEST_VOLUMES: dict[str, RealVolume] = {
    "t1slice": RealVolume(
        "dipy", "data/files/t1_coronal_slice.npy", 1.0, True,
        contrast="T1-weighted, one coronal slice, skull-stripped", licence=_DIPY,
    ),
    "s0": RealVolume(
        "dipy", "data/files/S0_10slices.nii.gz", 2.0, True,
        contrast="b=0 diffusion EPI (T2-weighted), 10 axial slices, skull-stripped", licence=_DIPY,
    ),
    "aniso": RealVolume(
        "dipy", "data/files/aniso_vox.nii.gz", 4.0, False, (4, 20),
        contrast="T2-weighted EPI (CSF bright), head and background", licence=_DIPY,
    ),
    "piesno": RealVolume(
        "dipy", "data/files/test_piesno.nii.gz", 2.5, False, (2, 12),
        contrast="diffusion-weighted EPI, head and background", licence=_DIPY,
        note="one axial slice: the third axis holds its 14 diffusion-weighted images (dipy: 'slice of "
        "N=8, K=14 diffusion data'), of which 2-11 are used; the header says 1 mm, 2.5 mm is assumed",
    ),
    "example_func": RealVolume(
        "fsl", "tests/testdata/example_func.nii.gz", 4.0, True, (2, 19),
        contrast="T2*-weighted gradient-echo EPI (fMRI), brain-extracted", licence="fslpy's (Apache-2.0)",
        note="installed by the fslpy distribution, whose import package is `fsl`",
    ),
    "s1045": RealVolume(
        "matplotlib", "mpl-data/sample_data/s1045.ima.gz", 1.1, False,
        contrast="T1-weighted, one sagittal slice of the head and neck, 8-bit, background set to zero",
        licence="matplotlib's (PSF-based)",
        note="pixel size not stored: 1.1 mm assumed from the head's length (174 pixels front to back "
        "above the orbits, about 190 mm in an adult)",
    ),
    "mean_head": RealVolume(
        "pydeface", "data/mean_reg2mean.nii.gz", 1.0, False, (70, 190), step=10, kind=AVERAGE,
        contrast="T1-weighted, whole head with face and a wide dark background", licence="pydeface's (MIT)",
        note="an average of registered heads (pydeface's registration target), not one subject's scan; "
        "every 10th axial slice from the orbits to the vertex",
    ),
    # Debian 12: mricron-data's Colin27 (the MNI's single-subject template) and its brain-extracted copy.
    "colin27": RealVolume(
        "mricron-data", "ch2.nii.gz", 1.0, False, (40, 150), step=10, kind=REPEATED, stored=(181, 217),
        contrast="T1-weighted, whole head, 8-bit, background set to zero", licence=_MRICRON,
        note="Colin27: one adult scanned 27 times, the scans registered to MNI space and averaged (far "
        "less noise than one scan); every 10th axial slice from the cerebellum to the upper convexity",
    ),
    "colin27_brain": RealVolume(
        "mricron-data", "ch2bet.nii.gz", 1.0, True, (40, 150), step=10, kind=REPEATED, stored=(181, 217),
        stripped_from="colin27", contrast="T1-weighted, brain-extracted, 8-bit", licence=_MRICRON,
        note="the scan of colin27 brain-extracted, as the package ships it; the same slices",
    ),
    # Debian 12: insighttoolkit5-examples' T1 head of ITK's k-means test, and its brain by the mask beside it.
    "kmeans_t1": RealVolume(
        _ITK, "KmeansTest_T1UCharRaw.nii.gz", 2.0, False, (6, 54), step=4, stored=(128, 128),
        contrast="T1-weighted, whole head, coronal, 8-bit, background set to zero", licence=_ITK_LICENCE,
        note="62 coronal slices of 2 x 2 mm, 3 mm apart, the head cut off flat below; every 4th slice "
        "from the occipital to the frontal lobe",
    ),
    "kmeans_t1_brain": RealVolume(
        _ITK, "KmeansTest_T1UCharRaw.nii.gz", 2.0, True, (6, 54), step=4, stored=(128, 128),
        mask="KmeansTest_T1RawSkullStrip.nii.gz", stripped_from="kmeans_t1", licence=_ITK_LICENCE,
        contrast="T1-weighted, coronal, 8-bit, brain only",
        note="the scan of kmeans_t1, the same slices, set to zero outside the brain mask the package "
        "ships beside it (KmeansTest_T1RawSkullStrip.nii.gz)",
    ),
}  # fmt: skip
# A second, separate real set for tuning the simulator, so that no tuning decision looks at the test
# volumes: nibabel's example EPI series (a 2 mm T2*-weighted brain, masked to the head's interior), as
# stored, turned a quarter, and from half its matrix: scanners store slices in any orientation and
# acquire at coarser resolutions than the matrix they reconstruct to.
_EPI = RealVolume(
    "nibabel", "tests/data/example4d.nii.gz", 2.0, True, (4, 22),
    contrast="T2*-weighted EPI (fMRI), masked to the head's interior", licence="nibabel's (MIT)",
)  # fmt: skip
TUNING_VOLUMES: dict[str, RealVolume] = {
    "epi": _EPI,
    "epi_turned": dataclasses.replace(_EPI, turns=1, note="the same scan turned a quarter"),
    "epi_half_matrix": dataclasses.replace(_EPI, matrix=0.5, note="the same scan from half its matrix"),
}
VOLUME_SETS: dict[str, dict[str, RealVolume]] = {"test": TEST_VOLUMES, "tuning": TUNING_VOLUMES}


def package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it (a Debian package's: the
    folder of its volumes, under FEDMRI_DEBIAN_ROOT)."""
    from utils.errors import UserError

    if is_debian(package):
        return debian_folder(package)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the real volumes ship with {package!r}; pip install -r requirements-dev.txt")
    return Path(next(iter(spec.submodule_search_locations)))


def read_stored(path: Path) -> np.ndarray:
    """The array of a volume file as stored: NIfTI, a ``.npy`` slice, a MetaImage (``.mha``, ``.mhd``,
    one channel), or matplotlib's raw MR slice (``.ima.gz``: 256 x 256 big-endian 16-bit, read as
    matplotlib's own MRI example reads it)."""
    import nibabel as nib

    from utils.errors import UserError

    if path.suffix in (".mha", ".mhd"):
        data, header = read_metaimage(path)
        if header.get("ElementNumberOfChannels", "1") != "1":
            raise UserError(f"{path}: a MetaImage of several channels per pixel is not a volume")
        return (data[..., None] if data.ndim == 2 else data).astype(np.float32)
    if path.suffix == ".npy":
        return np.load(path)[..., None]
    if path.name.endswith(".ima.gz"):
        raw = gzip.decompress(path.read_bytes())
        return np.frombuffer(raw, ">u2").reshape(256, 256)[..., None].astype(np.float32)
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def read_real(volume: RealVolume) -> np.ndarray:
    """One real volume as (slices, H, W) float32 magnitudes, in its stored orientation turned
    ``volume.turns`` quarters, from ``volume.matrix`` of its k-space (zero outside ``volume.mask``)."""
    from utils.errors import UserError

    folder = package_folder(volume.package)
    for name in filter(None, (volume.path, volume.mask)):
        if not (folder / name).is_file():
            raise UserError(f"real volume {folder / name} is missing; reinstall {volume.package}")
    data = read_stored(folder / volume.path)
    if volume.mask:
        data = np.where(read_stored(folder / volume.mask) > 0, data, 0.0)
    data = data[..., volume.frame] if data.ndim == 4 else data
    if volume.slices is not None:
        data = data[:, :, volume.slices[0] : volume.slices[1] : volume.step]
    data = np.abs(np.rot90(np.moveaxis(data, -1, 0), volume.turns, axes=(1, 2))).astype(np.float32)
    if volume.matrix < 1.0:
        from data.simulation.imaging import acquisition_matrix

        data = acquisition_matrix(data, volume.matrix)
    return np.ascontiguousarray(data)


def _distribution(package: str) -> str:
    """The PyPI distribution that installs an import package (``fsl`` -> ``fslpy``)."""
    return {"fsl": "fslpy"}.get(package, package)


def provenance(volume: RealVolume) -> str:
    """Where the file comes from: ``distribution: `path``` (PyPI), or the Debian package and the path
    it installs the file at."""
    if not is_debian(volume.package):
        return f"{_distribution(volume.package)}: `{volume.path}`"
    folder = f"/{DEBIAN_FOLDERS[volume.package]}"
    mask = f" (mask `{volume.mask}` beside it)" if volume.mask else ""
    return f"Debian 12 {volume.package}: `{folder}/{volume.path}`{mask}"


def _sites(volume: RealVolume) -> str:
    """Which sites are tested on the volume (realism_sites.tested_on, in words)."""
    if not volume.skull_stripped:
        return "whole-head sites"
    if volume.stripped_from:
        return f"skull-stripped sites (whole-head sites: `{volume.stripped_from}`)"
    return "skull-stripped and whole-head sites"


def volume_rows(volumes: dict[str, RealVolume]) -> list[list[str]]:
    """One table row per volume: provenance, kind, contrast, stored matrix and field of view (read from
    the installed file, or as declared for a Debian package's), the slices used, which sites test on
    it, licence."""
    rows = []
    for name, volume in volumes.items():
        if volume.stored is not None and volume.slices is not None:
            (h, w), used = volume.stored, len(range(*volume.slices, volume.step))
        else:
            h, w = read_stored(package_folder(volume.package) / volume.path).shape[:2]
            used = read_real(volume).shape[0]
        rows.append(
            [
                f"`{name}`",
                provenance(volume),
                volume.kind,
                volume.contrast,
                f"{h} x {w} at {volume.pixel_mm:g} mm",
                f"{h * volume.pixel_mm:.0f} x {w * volume.pixel_mm:.0f} mm",
                str(used),
                _sites(volume),
                volume.licence,
                volume.note or "",
            ]
        )
    return rows


def _test_set_heading() -> str:
    """How many volumes (and scans) from how many packages of which registry."""
    registries: dict[str, set[str]] = {"PyPI": set(), "Debian 12": set()}
    for volume in TEST_VOLUMES.values():
        debian = is_debian(volume.package)
        registries["Debian 12" if debian else "PyPI"].add(_distribution(volume.package))
    scans = sum(not v.stripped_from for v in TEST_VOLUMES.values())
    packages = "; ".join(f"{r}: {', '.join(sorted(names))}" for r, names in registries.items() if names)
    count = sum(len(names) for names in registries.values())
    return f"## Test set: {len(TEST_VOLUMES)} volumes ({scans} scans) from {count} packages ({packages})\n"


def _kinds_line() -> str:
    """The volumes that are not one scan of one subject, named."""

    def named(kind: str) -> str:
        return ", ".join(f"`{n}`" for n, v in TEST_VOLUMES.items() if v.kind == kind)

    lines = []
    if named(AVERAGE):
        lines.append(f"{named(AVERAGE)}: a population average, not a single subject's scan, and labelled "
                     "so in every table.")  # fmt: skip
    if named(REPEATED):
        lines.append(f"{named(REPEATED)}: one subject's repeated scans averaged, with far less noise "
                     "than a single scan.")  # fmt: skip
    twins = ", ".join(f"`{n}`" for n, v in TEST_VOLUMES.items() if v.stripped_from)
    if twins:
        lines.append(f"{twins}: brain-only copies of whole-head volumes of the set, for the skull-stripped "
                     "site only, so that no site is tested on one scan twice.")  # fmt: skip
    return " ".join(lines)


def real_volumes_markdown() -> str:
    """The text of docs/results/realism/REAL_VOLUMES.md: both sets and every candidate left out."""
    from utils.tables import markdown

    header = ["volume", "package: file", "kind", "contrast", "matrix", "field of view", "slices used",
              "tested on", "licence", "note"]  # fmt: skip
    text = [
        "# Real brain MR volumes of the transfer check\n",
        "Written by `python bench/realism_volumes.py` from `bench/realism_volumes.py`; "
        "`tests/bench/test_realism.py` checks that this file is what it writes. Every file ships inside a "
        "package that a package manager installs, from PyPI (`pip install -r requirements-dev.txt`) or "
        "from Debian 12's main archive; the project's code reads the installed files and downloads "
        "nothing. Each volume is resampled to a site's pixel size, centre-cropped or zero-padded to its "
        "matrix and scaled to [0, 1]; the skull-stripped site (brats) is tested on the skull-stripped "
        "volumes only.\n",
        f"The Debian part: `{INSTALL}` (as root). Without root, fetch the two packages with "
        "`apt-get download`, unpack each into one folder with `dpkg -x <file>.deb <folder>` and set "
        f"`{ROOT_VARIABLE}=<folder>`. Without them, `bench/realism.py` says so in one line for each "
        "missing package and tests on the other volumes.\n",
        _test_set_heading(),
        "The final measurement; no simulator setting is chosen by looking at it. " + _kinds_line() + "\n",
        markdown(header, volume_rows(TEST_VOLUMES), align="l" * len(header)),
        "## Tuning set\n",
        "For choosing simulator settings; it shares no file with the test set.\n",
        markdown(header, volume_rows(TUNING_VOLUMES), align="l" * len(header)),
        "## Searched and not used\n",
        "Every other candidate looked at in the PyPI wheels and sdists and the Debian 12 packages the "
        "project can reach, and why it is in neither set.\n",
        markdown(
            ["where", "files", "what", "why not used"],
            [[c.where, c.files, c.what, c.why] for c in NOT_USED],
            align="llll",
        ),
    ]
    return "\n".join(text)


if __name__ == "__main__":
    from utils.io import atomic_write_text

    atomic_write_text(TABLE_PATH, real_volumes_markdown())
    print(f"wrote {TABLE_PATH}")
