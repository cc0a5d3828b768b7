"""The simulated brain federation: shapes, determinism, splits, contrast physics, lesions, cache, pickling."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from data.simulation import PROFILES, simulate_subject
from data.simulation.imaging import tissue_parameters, tissue_signal
from data.sources import synthetic
from data.sources.base import SPLITS, SourceContext, VolumeInfo
from data.sources.synthetic import SyntheticOptions, SyntheticSource
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]
SMALL = {"size": 40, "subjects": {"train": 2, "val": 1, "test": 1}, "slices_per_subject": 3}


def make_source(
    tmp_path: Path, profile: str = "fastmri", seed: int = 0, site: str = "a", **changes
) -> SyntheticSource:
    options = SyntheticOptions(profile=profile, **{**SMALL, **changes})
    return SyntheticSource(options, SourceContext(site=site, seed=seed, cache_dir=tmp_path))


def all_slices(source: SyntheticSource) -> np.ndarray:
    return np.stack(
        [
            source.read_slice(volume, i)
            for split in SPLITS
            for volume in source.volumes(split)
            for i in range(volume.num_slices)
        ]
    )


def mean_where(image: np.ndarray, mask: np.ndarray) -> float:
    assert mask.sum() > 20, "too few pure-tissue pixels to compare"
    return float(image[mask].mean())


def test_volumes_shapes_and_dtypes(tmp_path):
    source = make_source(tmp_path, contrasts=["t2", "t1"])
    source.prepare()
    counts = {"train": 2, "val": 1, "test": 1}
    for split in SPLITS:
        volumes = source.volumes(split)
        assert len(volumes) == 2 * counts[split]
        assert [v.contrast for v in volumes[:2]] == ["t2", "t1"]
        for volume in volumes:
            assert volume.name == f"{volume.subject}_{volume.contrast}"
            assert volume.num_slices == 3 and volume.shape == (40, 40)
            image = source.read_slice(volume, 2)
            assert image.shape == (40, 40) and image.dtype == np.float32
            assert np.isfinite(image).all() and image.min() >= 0 and image.max() > 0


def test_splits_are_disjoint_by_subject_and_keep_contrasts_together(tmp_path):
    source = make_source(tmp_path, subjects={"train": 3, "val": 2, "test": 2})
    source.prepare()
    subjects = {split: {v.subject for v in source.volumes(split)} for split in SPLITS}
    assert [len(subjects[s]) for s in SPLITS] == [3, 2, 2]
    assert not (
        subjects["train"] & subjects["val"]
        or subjects["train"] & subjects["test"]
        or subjects["val"] & subjects["test"]
    )
    for split in SPLITS:
        for subject in subjects[split]:
            assert sorted(v.contrast for v in source.volumes(split) if v.subject == subject) == ["t1", "t2"]


def test_same_config_and_seed_give_identical_images_also_from_cache_and_another_process(tmp_path):
    first = make_source(tmp_path / "one")
    first.prepare()
    images = all_slices(first)
    second = make_source(tmp_path / "two")
    second.prepare()
    np.testing.assert_array_equal(all_slices(second), images)
    reloaded = make_source(tmp_path / "one")
    reloaded.prepare()
    np.testing.assert_array_equal(all_slices(reloaded), images)

    script = (
        "import sys; from pathlib import Path; from data.sources.base import SourceContext;"
        "from data.sources.synthetic import SyntheticOptions, SyntheticSource;"
        f"o = SyntheticOptions(profile='fastmri', **{SMALL!r});"
        "SyntheticSource(o, SourceContext(site='a', seed=0, cache_dir=Path(sys.argv[1]))).prepare()"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "three")], cwd=REPO, check=True)
    other = make_source(tmp_path / "three")
    other.prepare()
    np.testing.assert_array_equal(all_slices(other), images)


def test_different_seed_or_site_gives_different_subjects(tmp_path):
    base = make_source(tmp_path)
    base.prepare()
    images = all_slices(base)
    for changed in (make_source(tmp_path, seed=1), make_source(tmp_path, site="b")):
        changed.prepare()
        other = all_slices(changed)
        assert other.shape == images.shape
        assert np.abs(other - images).mean() > 0.05 * images.mean()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_tissue_contrast_follows_spin_echo_physics(profile):
    options = SyntheticOptions(profile=profile, size=64, slices_per_subject=4, lesions=False)
    sim = simulate_subject(options, seed=0, site="a", subject="sub-000")
    pure = {name: sim.fractions[name] > 0.9 for name in ("wm", "gm", "csf")}
    for draw in range(20):
        params = tissue_parameters(np.random.default_rng(draw))
        t1w = tissue_signal(sim.fractions, params, *PROFILES[profile].protocol["t1"])
        t2w = tissue_signal(sim.fractions, params, *PROFILES[profile].protocol["t2"])
        assert mean_where(t1w, pure["wm"]) > mean_where(t1w, pure["gm"]) > mean_where(t1w, pure["csf"])
        assert mean_where(t2w, pure["csf"]) > mean_where(t2w, pure["gm"]) > mean_where(t2w, pure["wm"])


def test_acquired_images_keep_the_tissue_contrast():
    options = SyntheticOptions(profile="brats", size=64, slices_per_subject=4, lesions=False)
    sim = simulate_subject(options, seed=0, site="a", subject="sub-000")
    wm, gm, csf = (sim.fractions[name] > 0.9 for name in ("wm", "gm", "csf"))
    t1w, t2w = sim.images["t1"], sim.images["t2"]
    assert mean_where(t1w, wm) > 1.1 * mean_where(t1w, gm) > 1.1 * mean_where(t1w, csf)
    assert mean_where(t2w, csf) > 1.5 * mean_where(t2w, gm) > 1.5 * mean_where(t2w, wm)


def test_brats_profile_has_lesions_hyperintense_in_t2_and_others_do_not():
    size = {"size": 48, "slices_per_subject": 8}
    for subject in ("sub-000", "sub-001"):
        with_lesion = simulate_subject(SyntheticOptions(profile="brats", **size), 0, "a", subject)
        without = simulate_subject(SyntheticOptions(profile="brats", lesions=False, **size), 0, "a", subject)
        oedema = with_lesion.fractions["oedema"] + with_lesion.fractions["necrosis"] > 0.5
        assert oedema.sum() > 10
        assert "oedema" not in without.fractions
        ratio = with_lesion.images["t2"][oedema].mean() / without.images["t2"][oedema].mean()
        assert ratio > 1.2
    plain = simulate_subject(SyntheticOptions(profile="fastmri", **size), 0, "a", "sub-000")
    assert "oedema" not in plain.fractions and "necrosis" not in plain.fractions
    forced = simulate_subject(SyntheticOptions(profile="fastmri", lesions=True, **size), 0, "a", "sub-000")
    assert (forced.fractions["oedema"] > 0.5).any()


def test_only_skull_stripped_profile_has_zero_background_and_no_skull():
    brats = simulate_subject(SyntheticOptions(profile="brats", **SMALL), 0, "a", "sub-000")
    fastmri = simulate_subject(SyntheticOptions(profile="fastmri", **SMALL), 0, "a", "sub-000")
    assert "fat" not in brats.fractions and (brats.images["t1"][:, 0, :] == 0).all()
    assert (fastmri.fractions["fat"] > 0.3).any() and (fastmri.images["t1"][:, 0, :] > 0).all()


def fail(*args, **kwargs):
    raise AssertionError("the generator ran")


def counting(calls: list[str]):
    """``simulate_subject`` that records which subjects it generates."""
    real = simulate_subject

    def wrapper(options, seed, site, subject, *args, **kwargs):
        calls.append(subject)
        return real(options, seed, site, subject, *args, **kwargs)

    return wrapper


def test_cache_is_reused_and_invalidated_by_option_changes(tmp_path, monkeypatch):
    first = make_source(tmp_path)
    first.prepare()
    images = all_slices(first)
    monkeypatch.setattr(synthetic, "simulate_subject", fail)
    again = make_source(tmp_path)
    again.prepare()
    np.testing.assert_array_equal(all_slices(again), images)
    for changes in ({"noise_scale": 0.5}, {"slices_per_subject": 4}, {"contrasts": ["t1"]}):
        with pytest.raises(AssertionError, match="generator ran"):
            make_source(tmp_path, **changes).prepare()
    for other in (make_source(tmp_path, seed=1), make_source(tmp_path, site="b")):
        with pytest.raises(AssertionError, match="generator ran"):
            other.prepare()


def test_site_reads_back_from_the_shared_volume_cache_without_the_generator(tmp_path, monkeypatch):
    first = make_source(tmp_path)
    first.prepare()
    images = all_slices(first)
    # one VolumeCache entry (.npy + .json manifest) per subject and contrast, next to decoded file volumes
    keys = {first.entry_key(f"sub-{i:03d}", c) for i in range(4) for c in ("t1", "t2")}
    assert [p.name for p in tmp_path.iterdir()] == ["volumes"]
    entries = {f"{key}.{ext}" for key in keys for ext in ("npy", "json")}
    assert {p.name for p in (tmp_path / "volumes").iterdir()} == entries
    # neither the generator nor the template is touched when everything is cached
    monkeypatch.setattr(synthetic, "simulate_subject", fail)
    monkeypatch.setattr(synthetic, "site_maps", fail)
    again = make_source(tmp_path)
    again.prepare()
    np.testing.assert_array_equal(all_slices(again), images)
    # a lost entry regenerates only its subject
    (tmp_path / "volumes" / f"{first.entry_key('sub-002', 't2')}.npy").unlink()
    monkeypatch.undo()
    calls: list[str] = []
    monkeypatch.setattr(synthetic, "simulate_subject", counting(calls))
    repaired = make_source(tmp_path)
    repaired.prepare()
    assert calls == ["sub-002"]
    np.testing.assert_array_equal(all_slices(repaired), images)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_generated_cache_is_as_readable_as_a_plainly_created_folder(tmp_path):
    make_source(tmp_path / "cache").prepare()
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain.txt").write_text("x")
    folder_mode = (tmp_path / "plain").stat().st_mode & 0o777
    file_mode = (tmp_path / "plain.txt").stat().st_mode & 0o777
    folders = [p for p in (tmp_path / "cache").rglob("*") if p.is_dir()]
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert folders and all(p.stat().st_mode & 0o777 == folder_mode for p in folders)
    assert files and all(p.stat().st_mode & 0o777 == file_mode for p in files)


def test_interrupted_generation_leaves_no_cache_that_loads(tmp_path, monkeypatch):
    source = make_source(tmp_path)
    folder = tmp_path / "volumes"
    calls = []
    real = synthetic.simulate_subject

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "simulate_subject", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        source.prepare()
    for contrast in ("t1", "t2"):  # the first subject is complete, the interrupted one absent
        assert (folder / f"{source.entry_key('sub-000', contrast)}.json").is_file()
        assert not list(folder.glob(f"*{source.entry_key('sub-001', contrast)}*"))

    # A process killed outright leaves its temporary files, or a volume renamed into place whose
    # manifest was never written; a manifest whose volume is cut short must not load either.
    key = source.entry_key("sub-001", "t1")
    (folder / f".{key}-dead.npy").write_bytes(b"\x93NUMPY half a header")
    (folder / f".{key}.json.dead.tmp").write_text('{"version"')
    np.save(folder / f"{key}.npy", np.zeros((3, 40, 40), np.float32))
    cut = source.entry_key("sub-000", "t2")
    data = (folder / f"{cut}.npy").read_bytes()
    (folder / f"{cut}.npy").write_bytes(data[: len(data) // 2])
    generated: list[str] = []
    monkeypatch.setattr(synthetic, "simulate_subject", counting(generated))
    source.prepare()
    assert generated == ["sub-000", "sub-001", "sub-002", "sub-003"]  # the leftovers are ignored
    expected = make_source(tmp_path / "clean")
    expected.prepare()
    np.testing.assert_array_equal(all_slices(source), all_slices(expected))


def test_processes_generating_the_same_site_at_once_agree(tmp_path):
    script = (
        "import sys; from pathlib import Path; from data.sources.base import SourceContext;"
        "from data.sources.synthetic import SyntheticOptions, SyntheticSource;"
        f"o = SyntheticOptions(profile='fastmri', **{SMALL!r});"
        "SyntheticSource(o, SourceContext(site='a', seed=0, cache_dir=Path(sys.argv[1]))).prepare()"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "shared")], cwd=REPO) for _ in range(3)
    ]
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0]
    shared = make_source(tmp_path / "shared")
    expected = make_source(tmp_path / "alone")
    shared.prepare()
    expected.prepare()
    np.testing.assert_array_equal(all_slices(shared), all_slices(expected))
    names = {p.name for p in (tmp_path / "shared" / "volumes").iterdir()}
    assert not [n for n in names if n.startswith(".")] and len(names) == 16


def test_source_pickles_before_and_after_prepare(tmp_path):
    source = make_source(tmp_path)
    copy = pickle.loads(pickle.dumps(source))
    copy.prepare()
    source.prepare()
    size_before_reading = len(pickle.dumps(source))
    volume = source.volumes("val")[1]
    expected = source.read_slice(volume, 1)  # opens a memory map, which must not travel
    assert len(pickle.dumps(source)) == size_before_reading
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone.read_slice(volume, 1), expected)
    np.testing.assert_array_equal(copy.read_slice(volume, 1), expected)


def test_bad_reads_raise_clear_errors(tmp_path):
    source = make_source(tmp_path)
    with pytest.raises(RuntimeError, match="prepare"):
        source.volumes("train")
    source.prepare()
    volume = source.volumes("train")[0]
    with pytest.raises(IndexError, match="out of range"):
        source.read_slice(volume, 3)
    with pytest.raises(IndexError, match="out of range"):
        source.read_slice(volume, -1)
    with pytest.raises(UserError, match="sub-999_t1"):
        source.read_slice(VolumeInfo("sub-999_t1", "sub-999", "t1", 3, (40, 40)), 0)


def test_unusable_cache_dir_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cache_dir"):
        make_source(blocker).prepare()


@pytest.mark.parametrize(
    "changes",
    [
        {"size": 31},
        {"contrasts": []},
        {"contrasts": ["t1", "t1"]},
        {"contrasts": ["flair"]},
        {"profile": "siemens"},
        {"subjects": {"train": 0}},
        {"subjects": {"tran": 3}},
        {"slices_per_subject": 0},
        {"noise_scale": -0.1},
        {"colour": "red"},
    ],
)
def test_invalid_options_are_rejected(changes):
    with pytest.raises(ValidationError):
        SyntheticOptions(**{"profile": "fastmri", **changes})


def test_defaults_follow_the_profile():
    options = SyntheticOptions(profile="umr")
    assert (options.size, options.slices_per_subject, options.contrasts) == (96, 16, ["t1", "t2"])
    assert (options.subjects.train, options.subjects.val, options.subjects.test) == (8, 2, 2)
    assert options.lesions is None and options.kind == "synthetic"
