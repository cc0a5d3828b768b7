"""The real brain MR volumes of the transfer check (bench/realism.py): what each is, where it comes
from, how it is read and fitted to a simulated site.

Every volume ships inside a package that ``requirements-dev.txt`` installs from PyPI; nothing is
downloaded at run time. Two sets are kept apart: the test set (the final measurement, never used to
choose simulator settings) and the tuning set (nibabel's example EPI series, for choosing them).
``NOT_USED`` lists every other candidate that was looked at and why it is not in either set.

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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TABLE_PATH = Path(__file__).resolve().parents[1] / "docs" / "results" / "realism" / "REAL_VOLUMES.md"
SCAN, AVERAGE = "single-subject scan", "population average"


@dataclasses.dataclass(frozen=True)
class RealVolume:
    """A real brain MR volume shipped inside an installed package (read from disk, never downloaded)."""

    package: str  # the installed package that ships the file
    path: str  # the file, relative to the package's folder
    pixel_mm: float  # in-plane pixel size
    skull_stripped: bool  # brain only (zero background): the only kind a skull-stripped site is tested on
    slices: tuple[int, int] | None = None  # slices kept along the last axis, [start, stop); None = all
    frame: int = 0  # the volume of a 4D series
    turns: int = 0  # in-plane quarter turns: the same scan stored in another orientation
    matrix: float = 1.0  # fraction of k-space kept along each axis: the same scan from a smaller matrix
    step: int = 1  # every step-th slice of ``slices``
    kind: str = SCAN  # a single subject's scan, or an average over a population (labelled so)
    contrast: str = ""  # what the image shows, for the table
    licence: str = ""  # the licence the package ships the file under
    note: str = ""  # anything a reader of the numbers should know (estimated pixel size, ...)


# The final measurement: the volumes every number of RESULTS.md's "Transfer to real scans" comes from.
_DIPY = "dipy's (BSD-3-Clause)"
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


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A file (or package) searched for real brain MR volumes and left out of both sets, with why."""

    where: str  # package (PyPI) or Debian package
    files: str
    what: str
    why: str


_SIM = "the simulator's own anatomy (data/simulation builds every simulated subject from it)"
NOT_USED: tuple[Candidate, ...] = (
    Candidate("nilearn (PyPI)", "datasets/data/mni_icbm152_*_09a_converted.nii.gz",
              "ICBM152 2009a T1 template and tissue maps: a population average", _SIM),
    Candidate("nilearn (PyPI)", "datasets/data/image_10426.nii.gz", "a statistical map (t values)",
              "not an MR image"),
    Candidate("nibabel (PyPI)", "tests/data/example4d.nii.gz", "single-subject T2*-weighted EPI",
              "the tuning set; example_nifti2.nii.gz is a crop of the same series"),
    Candidate("nibabel (PyPI), nipy (PyPI)", "anatomical.nii, example4d+orig.BRIK.gz, functional.nii, "
              "reoriented_anat_moved.nii; nipy testing/anatomical.nii.gz, functional.nii.gz",
              "one subject's spatially normalised T1 and EPI (nipy's are the same files)",
              "a 66 x 82 mm box cut out of the brain's centre (33 x 41 x 25 at 2 mm; the EPI 17 x 21 x 3 "
              "at 4 mm): fitted to a site's field of view it is a bright rectangle with hard edges"),
    Candidate("nibabel (PyPI)", "tests/data/0.dcm, 1.dcm; nicom/tests/data/siemens_dwi_*.dcm.gz, "
              "philips_mprage.dcm.gz, csa_slice_norm.dcm, decimal_rescale.dcm",
              "DICOM headers of real diffusion, MPRAGE, fMRI and qT1 series",
              "pixel data replaced by test patterns or zeros, or left out"),
    Candidate("nibabel (PyPI)", "slicethickness_empty_string.dcm", "a MIP of a time-of-flight angiogram",
              "a derived projection, not a slice"),
    Candidate("nibabel (PyPI)", "*.PAR/REC, *.mnc, tinypet.v, test.mgz, standard.nii.gz, scaled+tlrc",
              "phantoms, synthetic arrays, PET, a statistical map", "not a human brain MR image"),
    Candidate("dipy (PyPI)", "data/files/ascm_out_test.nii.gz", "aniso_vox.nii.gz denoised",
              "the same scan as the test volume aniso"),
    Candidate("dipy (PyPI)", "small_25, small_64D, small_101D", "diffusion series",
              "10 x 10 x 10 voxel crops (or smaller)"),
    Candidate("pydicom (PyPI)", "data/test_files/MR_small*.dcm", "one MR image, 64 x 64 at 0.31 mm",
              "a 20 mm crop: no head outline, not a brain slice"),
    Candidate("pydicom (PyPI)", "test_files/dicomdirtests/98892003/MR*", "MR localizers and an angiogram",
              "16 x 16 thumbnails"),
    Candidate("pydicom-data (PyPI)", "emri_small*.dcm", "enhanced MR, 'HEAD', T1 TFE",
              "a 64 x 64 crop of a 256 x 256 acquisition, pixel size removed"),
    Candidate("pydicom-data (PyPI)", "MR2_*.dcm, MR-SIEMENS-DICOM-WithOverlays.dcm",
              "MR of a shoulder; MR of an abdomen", "not a brain"),
    Candidate("deid-data (PyPI)", "humans/ctbrain*.dcm", "head CT", "CT, not MR"),
    Candidate("scikit-image (PyPI)", "data.brain()", "10 MR slices of a head",
              "not in the wheel: fetched from the internet on first use"),
    Candidate("templateflow, torchio, antspyx, nighres, siibra, brainglobe (PyPI)", "their data sets",
              "templates and sample scans", "fetched from the internet at run time; the wheels ship none"),
    Candidate("nitime, nipype (PyPI)", "data/fmri*.nii.gz; testing/data/ds003_sub-01_mc.nii.gz",
              "fMRI series", "10 x 10 x 18 crops; 16 x 16 x 9 at 12.5 mm"),
    Candidate("fslpy (PyPI)", "tests/test_transform/testdata/nonlinear/src.nii.gz, ref.nii.gz, "
              "tests/testdata/test_feat/*", "T1 and fMRI test data",
              "slabs (35 x 96 x 54 at 1 mm) and crops"),
    Candidate("nimare (PyPI)", "resources/templates/tpl-MNI152NLin6Asym_res-01_T1w.nii.gz",
              "MNI152 T1, a population average",
              "its install pulls in numba, pandas, scikit-learn, statsmodels and plotly and pins "
              "nilearn<0.14, for a template of the family the simulator is built from"),
    Candidate("neurosynth (PyPI)", "resources/MNI152_T1_2mm_brain.nii.gz", "MNI152 brain, an average",
              "sdist of 2019 with Python-2-era dependencies; the same template family"),
    Candidate("tractseg, sdcflows, qsiprep (PyPI)", "MNI_FA_template, fmap_atlas, mni_lps_fmap_atlas",
              "FA template, field-map atlases", "not anatomical MR images"),
    Candidate("SimpleITK, itk, monai, medpy, highdicom, dicom2nifti, dcmstack, nitransforms, niworkflows, "
              "mriqc, fastmri (PyPI)", "-", "-", "no image data in the wheel (nitransforms: warp fields)"),
    Candidate("mricron-data (Debian 12)", "templates/ch2.nii.gz, ch2better.nii.gz",
              "Colin27: 27 scans of one subject averaged, whole head, 1 mm",
              "Debian only: the project installs its test data from PyPI (requirements-dev.txt)"),
    Candidate("insighttoolkit5-examples (Debian 12)", "KmeansTest_T1UCharRaw.nii.gz, "
              "itkBrainSliceComplex.mha, BrainMidSagittalSlice.png", "T1 volume, complex brain slice",
              "Debian only; BrainT1Slice / BrainProtonDensitySlice* are BrainWeb simulations"),
    Candidate("mni-colin27-nifti, mni-icbm152-nlin-2009 (NeuroDebian)", "-", "Colin27, ICBM152",
              "not in Debian 12's main archive, the only Debian archive the project reaches"),
)  # fmt: skip


def package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    from utils.errors import UserError

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the real volumes ship with {package!r}; pip install -r requirements-dev.txt")
    return Path(next(iter(spec.submodule_search_locations)))


def read_stored(path: Path) -> np.ndarray:
    """The array of a volume file as stored: NIfTI, a ``.npy`` slice, or matplotlib's raw MR slice
    (``.ima.gz``: 256 x 256 big-endian 16-bit, read as matplotlib's own MRI example reads it)."""
    import nibabel as nib

    if path.suffix == ".npy":
        return np.load(path)[..., None]
    if path.name.endswith(".ima.gz"):
        raw = gzip.decompress(path.read_bytes())
        return np.frombuffer(raw, ">u2").reshape(256, 256)[..., None].astype(np.float32)
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def read_real(volume: RealVolume) -> np.ndarray:
    """One real volume as (slices, H, W) float32 magnitudes, in its stored orientation turned
    ``volume.turns`` quarters, from ``volume.matrix`` of its k-space."""
    from utils.errors import UserError

    path = package_folder(volume.package) / volume.path
    if not path.is_file():
        raise UserError(f"real volume {path} is missing; reinstall {volume.package}")
    data = read_stored(path)
    data = data[..., volume.frame] if data.ndim == 4 else data
    if volume.slices is not None:
        data = data[:, :, volume.slices[0] : volume.slices[1] : volume.step]
    data = np.abs(np.rot90(np.moveaxis(data, -1, 0), volume.turns, axes=(1, 2))).astype(np.float32)
    if volume.matrix < 1.0:
        from data.simulation.imaging import acquisition_matrix

        data = acquisition_matrix(data, volume.matrix)
    return np.ascontiguousarray(data)


def fit_to_site(volume: np.ndarray, pixel_mm: float, site_mm: float, size: int) -> np.ndarray:
    """Resample (S, H, W) to the site's pixel size, centre-crop/zero-pad to size x size, scale to [0, 1]."""
    from scipy import ndimage

    zoom = pixel_mm / site_mm
    out = np.zeros((volume.shape[0], size, size), dtype=np.float32)
    for i, image in enumerate(volume):
        resampled = np.maximum(ndimage.zoom(image, zoom, order=3), 0.0)
        h, w = resampled.shape
        top, left = (h - size) // 2, (w - size) // 2
        src = resampled[max(top, 0) : max(top, 0) + size, max(left, 0) : max(left, 0) + size]
        dy, dx = max(-top, 0), max(-left, 0)
        out[i, dy : dy + src.shape[0], dx : dx + src.shape[1]] = src
    return out / max(float(np.percentile(out, 99.9)), 1e-6)


def write_real_sites(config: Any, folder: Path, volumes: dict[str, RealVolume] = TEST_VOLUMES) -> dict:
    """Write each site's real test volumes under ``folder/<site>/`` and return the test config dict."""
    import nibabel as nib

    from data.simulation import PROFILES

    sites = []
    for site in config.sites:
        source = site.source
        if source.kind != "synthetic":
            continue
        profile = PROFILES[source.profile]
        root = folder / site.name
        for name, real in volumes.items():
            if profile.skull_stripped and not real.skull_stripped:
                continue
            volume = fit_to_site(read_real(real), real.pixel_mm, profile.fov_mm / source.size, source.size)
            path = root / name / "real.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.ascontiguousarray(np.moveaxis(volume, 0, -1)), np.eye(4)), str(path))
        sites.append(
            {
                "name": site.name,
                "source": {"kind": "folder", "root": str(root), "split": {"train": 0, "val": 0, "test": 1}},
                "mask": site.mask.model_dump(mode="json"),
                "batch_size": site.batch_size,
            }
        )
    test = config.to_dict()
    test["sites"] = sites
    return test


def _distribution(package: str) -> str:
    """The PyPI distribution that installs an import package (``fsl`` -> ``fslpy``)."""
    return {"fsl": "fslpy"}.get(package, package)


def volume_rows(volumes: dict[str, RealVolume]) -> list[list[str]]:
    """One table row per volume: provenance, kind, contrast, stored matrix and field of view (read from
    the installed file), the slices used, which sites test on it, licence."""
    rows = []
    for name, volume in volumes.items():
        stored = read_stored(package_folder(volume.package) / volume.path)
        h, w = stored.shape[:2]
        used = read_real(volume).shape[0]
        sites = "skull-stripped and whole-head sites" if volume.skull_stripped else "whole-head sites"
        rows.append(
            [
                f"`{name}`",
                f"{_distribution(volume.package)}: `{volume.path}`",
                volume.kind,
                volume.contrast,
                f"{h} x {w} at {volume.pixel_mm:g} mm",
                f"{h * volume.pixel_mm:.0f} x {w * volume.pixel_mm:.0f} mm",
                str(used),
                sites,
                volume.licence,
                volume.note or "",
            ]
        )
    return rows


def real_volumes_markdown() -> str:
    """The text of docs/results/realism/REAL_VOLUMES.md: both sets and every candidate left out."""
    from utils.tables import markdown

    header = ["volume", "package: file", "kind", "contrast", "matrix", "field of view", "slices used",
              "tested on", "licence", "note"]  # fmt: skip
    sources = sorted({_distribution(v.package) for v in TEST_VOLUMES.values()})
    averages = [n for n, v in TEST_VOLUMES.items() if v.kind == AVERAGE]
    text = [
        "# Real brain MR volumes of the transfer check\n",
        "Written by `python bench/realism_volumes.py` from `bench/realism_volumes.py`; "
        "`tests/bench/test_realism.py` checks that this file is what it writes. Every file ships inside a "
        "package that `requirements-dev.txt` installs from PyPI; nothing is downloaded at run time. "
        "Each volume is resampled to a site's pixel size, centre-cropped or zero-padded to its matrix "
        "and scaled to [0, 1]; the skull-stripped site (brats) is tested on the skull-stripped volumes "
        "only.\n",
        f"## Test set: {len(TEST_VOLUMES)} volumes from {len(sources)} packages ({', '.join(sources)})\n",
        "The final measurement; no simulator setting is chosen by looking at it. "
        + (
            f"{', '.join(f'`{a}`' for a in averages)}: a population average, not a single subject's "
            "scan, and labelled so in every table.\n"
            if averages
            else "\n"
        ),
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
