"""The simulator's realism options: scanner noise level, varied subjects, acquisition matrix; and the
real-volume preparation of the transfer check (bench/realism.py) on files the test writes itself."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from data.simulation import PROFILES, simulate_subject
from data.simulation.imaging import acquisition_matrix
from data.sources.synthetic import SyntheticOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import realism  # noqa: E402
import realism_report  # noqa: E402
import realism_volumes  # noqa: E402

_SIMULATED: dict[tuple[str, str, str], Any] = {}


def _simulated(helper: str, changes: dict[str, Any], options: SyntheticOptions, subject: str) -> Any:
    """``simulate_subject(options, 0, "site", subject)``, simulated once per helper, ``changes`` and
    subject in this module and a fresh copy returned every time: several tests compare the same subjects.
    The simulation is deterministic, which
    test_template_realism_is_the_default_and_varied_changes_every_subject checks without this."""
    key = (helper, repr(sorted(changes.items())), subject)
    if key not in _SIMULATED:
        _SIMULATED[key] = simulate_subject(options, 0, "site", subject)
    return copy.deepcopy(_SIMULATED[key])


def _subject_options(**changes) -> SyntheticOptions:
    return SyntheticOptions(profile="fastmri", size=64, slices_per_subject=2, contrasts=["t1"], **changes)


def _subject(**changes) -> np.ndarray:
    return _simulated("subject", changes, _subject_options(**changes), "sub-000").images["t1"]


def test_background_noise_is_rayleigh_at_the_profiles_level():
    noisy, clean = _subject(), _subject(noise_scale=0.0)
    corner = np.zeros(clean.shape[1:], dtype=bool)
    corner[:8, :8] = corner[:8, -8:] = corner[-8:, :8] = corner[-8:, -8:] = True
    assert clean[:, corner].max() < 1e-3  # the corners hold no head
    sigma = PROFILES["fastmri"].noise * float(np.percentile(clean, 99))  # gamma 1, scale 1
    background = noisy[:, corner]
    # magnitude of complex Gaussian noise: Rayleigh, mean sigma sqrt(pi/2), second moment 2 sigma^2
    assert background.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.08)
    assert np.mean(background**2) == pytest.approx(2 * sigma**2, rel=0.12)


def test_noise_range_sets_each_subjects_noise_level():
    corner = np.zeros((64, 64), dtype=bool)
    corner[:8, :8] = corner[:8, -8:] = corner[-8:, :8] = corner[-8:, -8:] = True
    clean = _subject(noise_scale=0.0)
    sigma = PROFILES["fastmri"].noise * float(np.percentile(clean, 99))
    quarter = _subject(noise_range=(0.25, 0.25))[:, corner]
    assert np.sqrt(np.mean(quarter**2) / 2) == pytest.approx(0.25 * sigma, rel=0.12)
    # varied: the same subject (pose, size) at a quarter of the noise of a fixed factor of one
    outside = _subject(realism="varied", noise_scale=0.0) < 1e-4
    one, fourth = (_subject(realism="varied", noise_range=(f, f))[outside] for f in (1.0, 0.25))
    assert np.sqrt(np.mean(fourth**2) / np.mean(one**2)) == pytest.approx(0.25, rel=0.12)
    # a range draws each subject's own level inside it
    levels = []
    for subject in range(6):
        options = SyntheticOptions(
            profile="fastmri", size=64, slices_per_subject=1, contrasts=["t1"], noise_range=(0.1, 2.0)
        )
        image = simulate_subject(options, 0, "site", f"sub-{subject:03d}").images["t1"]
        levels.append(np.sqrt(np.mean(image[:, corner] ** 2) / 2))
    assert 0.1 * sigma * 0.8 < min(levels) < max(levels) < 2.0 * sigma * 1.2
    assert max(levels) / min(levels) > 1.5


def test_stripped_fraction_serves_brains_without_the_head_around_them():
    plain, stripped = _subject(noise_scale=0.0), _subject(noise_scale=0.0, stripped_fraction=1.0)
    assert np.array_equal(_subject(stripped_fraction=0.0), _subject())
    corner = np.zeros(plain.shape[1:], dtype=bool)
    corner[:8, :8] = corner[:8, -8:] = corner[-8:, :8] = corner[-8:, -8:] = True
    assert _subject(stripped_fraction=1.0)[:, corner].max() == 0  # no noise floor outside the brain
    head, brain = plain > 0.05 * plain.max(), stripped > 0
    assert brain.sum() < 0.8 * head.sum()  # scalp, skull and the CSF around the brain are gone
    assert (brain & ~head).sum() < 0.01 * brain.sum()  # inside the head the plain image has

    # each subject is stripped or not, in the set fraction of subjects
    def area(subject: int, fraction: float) -> int:
        options = SyntheticOptions(
            profile="fastmri", size=48, slices_per_subject=1, contrasts=["t1"], stripped_fraction=fraction
        )
        return int((simulate_subject(options, 0, "site", f"sub-{subject:03d}").images["t1"] > 0).sum())

    stripped_subjects = [area(i, 0.5) < 0.8 * area(i, 0.0) for i in range(12)]
    assert 2 <= sum(stripped_subjects) <= 10


def test_export_fraction_serves_eight_bit_heads_on_a_zero_background(tmp_path):
    from data.sources.base import SourceContext
    from data.sources.synthetic import SyntheticSource

    plain, exported = _subject(), _subject(export_fraction=1.0)
    assert np.array_equal(_subject(export_fraction=0.0), plain)
    head = _subject(noise_scale=0.0) > 1e-3  # the head, scalp included (the corners hold none)
    corner = np.zeros(plain.shape[1:], dtype=bool)
    corner[:8, :8] = corner[:8, -8:] = corner[-8:, :8] = corner[-8:, -8:] = True
    assert plain[:, corner].min() > 0 and exported[:, corner].max() == 0  # the noise floor is gone
    # 256 levels of the volume's range, from 0 to its maximum
    step = exported.max() / 255
    levels = exported / step
    assert len(np.unique(exported)) <= 256 and np.allclose(levels, np.round(levels), atol=1e-3)
    # inside the head the same image, to half a level; the scalp and skull are kept, not stripped
    inside = exported > 0
    assert np.abs(exported - plain)[inside].max() <= 0.5 * step * 1.001
    assert inside.sum() > 0.9 * (head & (plain > step)).sum()
    assert inside.sum() > 1.2 * (_subject(stripped_fraction=1.0) > 0).sum()

    # drawn per subject: some exported, some not
    def zero_corner(subject: int) -> bool:
        options = SyntheticOptions(profile="fastmri", size=48, slices_per_subject=1, contrasts=["t1"],
                                   export_fraction=0.5)  # fmt: skip
        return simulate_subject(options, 0, "site", f"sub-{subject:03d}").images["t1"][0, :4, :4].max() == 0

    assert 2 <= sum(zero_corner(i) for i in range(12)) <= 10
    # the default keeps the cache key it had before the option existed
    context = SourceContext(site="a", seed=0, cache_dir=tmp_path)
    source = SyntheticSource(SyntheticOptions(profile="fastmri"), context)
    assert "export_fraction" not in source.identity("sub-000", "t1")["options"]
    other = SyntheticSource(SyntheticOptions(profile="fastmri", export_fraction=0.3), context)
    assert other.entry_key("sub-000", "t1") != source.entry_key("sub-000", "t1")


@pytest.mark.parametrize("channels", [1, 4, 8])
def test_magnitude_noise_is_noncentral_chi_of_the_channels(channels):
    from math import gamma, sqrt

    from data.simulation.imaging import magnitude_noise

    sigma, rng = 0.05, np.random.default_rng(3)
    # no signal: the noise floor of a root sum of squares of `channels` complex Gaussian channels
    floor = magnitude_noise(np.zeros((400, 400), np.float32), sigma, channels, rng)
    expected = sigma * sqrt(2) * gamma(channels + 0.5) / gamma(channels)
    assert abs(floor.mean() / expected - 1) < 0.01
    assert abs((floor**2).mean() / (2 * channels * sigma**2) - 1) < 0.01  # E[chi^2_2n] = 2n
    # strong signal: the noise inside the head stays sigma whatever the channels (the mean is
    # sqrt(s^2 + (2n - 1) sigma^2) to first order)
    strong = magnitude_noise(np.ones((400, 400), np.float32), sigma, channels, rng)
    assert abs(strong.std() / sigma - 1) < 0.03
    assert abs(strong.mean() - sqrt(1 + (2 * channels - 1) * sigma**2)) < 0.002


def test_receive_channels_raise_the_floor_outside_the_head_only(tmp_path):
    from pydantic import ValidationError

    from data.sources.base import SourceContext
    from data.sources.synthetic import SyntheticSource

    plain, clean = _subject(), _subject(noise_scale=0.0)
    assert np.array_equal(_subject(receive_channels=(1, 1)), plain)  # one channel: the Rician images
    eight = _subject(receive_channels=(8, 8))
    corner = np.zeros(plain.shape[1:], dtype=bool)
    corner[:8, :8] = corner[:8, -8:] = corner[-8:, :8] = corner[-8:, -8:] = True
    assert clean[:, corner].max() < 1e-3 * clean.max()  # no head in the corners
    # the floor rises by E[chi_16] / E[chi_2] = 3.14 before the profile's intensity curve, which
    # bends it a little: between 2.5x and 4x after it
    assert 2.5 < eight[:, corner].mean() / plain[:, corner].mean() < 4.0
    bright = clean > np.percentile(clean, 90)  # in the head the image barely moves
    assert np.abs(eight[bright] / plain[bright] - 1).mean() < 0.05

    # drawn per subject in the range: subjects differ in their floor
    def floor(subject: int) -> float:
        options = SyntheticOptions(profile="fastmri", size=48, slices_per_subject=1, contrasts=["t1"],
                                   receive_channels=(1, 8))  # fmt: skip
        image = simulate_subject(options, 0, "site", f"sub-{subject:03d}").images["t1"]
        return float(image[0, :6, :6].mean())

    floors = [floor(i) for i in range(8)]
    assert max(floors) > 2 * min(floors)
    # the default keeps the cache key it had before the option existed; another range is another key
    context = SourceContext(site="a", seed=0, cache_dir=tmp_path)
    source = SyntheticSource(SyntheticOptions(profile="fastmri"), context)
    assert "receive_channels" not in source.identity("sub-000", "t1")["options"]
    other = SyntheticSource(SyntheticOptions(profile="fastmri", receive_channels=(1, 8)), context)
    assert other.entry_key("sub-000", "t1") != source.entry_key("sub-000", "t1")
    for bad in [(8, 1), (0, 4), (1, 65)]:
        with pytest.raises(ValidationError, match="receive_channels must be"):
            SyntheticOptions(profile="fastmri", receive_channels=bad)


def _varied(subject: int = 0, **changes) -> np.ndarray:
    options = SyntheticOptions(profile="sms", size=64, slices_per_subject=2, contrasts=["t1"],
                               realism="varied", noise_scale=0.0, **changes)  # fmt: skip
    return _simulated("varied", changes, options, f"sub-{subject:03d}").images["t1"]


def test_head_scale_sets_the_head_size_in_the_field_of_view(tmp_path):
    from pydantic import ValidationError

    from data.sources.base import SourceContext
    from data.sources.synthetic import SyntheticSource

    for subject in range(3):  # null is the range varied always drew: the same images
        assert np.array_equal(_varied(subject, head_scale=(0.8, 1.2)), _varied(subject))

    def head_area(image: np.ndarray) -> float:
        return float((image > 0.05 * image.max()).mean())

    small = [head_area(_varied(i, head_scale=(0.8, 0.8))) for i in range(4)]
    large = [head_area(_varied(i, head_scale=(1.5, 1.5))) for i in range(4)]
    for a, b in zip(small, large, strict=True):  # the same subject, 1.875x the size: more of the image
        assert b > 1.6 * a or b > 0.9

    # at 1.5 the head runs off the edges of the field of view: tissue on most of the border; at 0.8 on none
    def on_border(image: np.ndarray) -> float:
        tissue = image > 0.1 * image.max()
        edges = (tissue[:, 0], tissue[:, -1], tissue[:, :, 0], tissue[:, :, -1])
        return float(np.concatenate([e.ravel() for e in edges]).mean())

    for i in range(4):
        assert on_border(_varied(i, head_scale=(0.8, 0.8))) == 0.0
        assert on_border(_varied(i, head_scale=(1.5, 1.5))) > 0.5
    # the default keeps the cache key it had before the option existed; a range is another key
    context = SourceContext(site="a", seed=0, cache_dir=tmp_path)
    source = SyntheticSource(SyntheticOptions(profile="sms", realism="varied"), context)
    options = source.identity("sub-000", "t1")["options"]
    assert "head_scale" not in options and "matrix_range" not in options
    for change in ({"head_scale": (0.8, 1.5)}, {"matrix_range": (0.5, 1.0)}):
        other = SyntheticSource(SyntheticOptions(profile="sms", realism="varied", **change), context)
        assert other.entry_key("sub-000", "t1") != source.entry_key("sub-000", "t1")
    for name, bad in [("head_scale", (1.5, 0.8)), ("head_scale", (0.0, 1.0)), ("head_scale", (1.0, 4.0)),
                      ("matrix_range", (0.9, 0.5)), ("matrix_range", (0.5, 1.2))]:  # fmt: skip
        with pytest.raises(ValidationError, match=f"{name} must be"):
            SyntheticOptions(profile="sms", realism="varied", **{name: bad})
    with pytest.raises(ValidationError, match="head_scale is drawn per subject under realism: varied only"):
        SyntheticOptions(profile="sms", head_scale=(0.8, 1.5))  # the template's pose has no head size


def _fractions(subject: int = 0, **changes) -> dict[str, np.ndarray]:
    options = SyntheticOptions(profile="fastmri", size=96, slices_per_subject=2, contrasts=["t1"],
                               noise_scale=0.0, **changes)  # fmt: skip
    return _simulated("fractions", changes, options, f"sub-{subject:03d}").fractions


def test_folded_fraction_cuts_sulci_into_the_outer_cortex_only(tmp_path):
    from scipy import ndimage

    from data.sources.base import SourceContext
    from data.sources.synthetic import SyntheticSource

    assert np.array_equal(_subject(folded_fraction=0.0), _subject())  # 0: the template's cortex
    pixel_mm = PROFILES["fastmri"].fov_mm / 96
    for subject in range(3):
        plain, folded = _fractions(subject), _fractions(subject, folded_fraction=1.0)
        for name in ("bone", "marrow", "fat", "skin"):  # the head around the brain as it was
            assert np.array_equal(plain[name], folded[name])
        brain = np.stack([ndimage.binary_fill_holes(b) for b in (plain["gm"] + plain["wm"]) > 0.5])
        # mid-brain slices: a pixel's distance to the brain's edge in the slice is about its depth (the
        # medial cortex along the midline's fissure is nearer the surface than it says)
        depth = np.stack([ndimage.distance_transform_edt(b) for b in brain]) * pixel_mm
        # the folds only turn tissue into sulcal CSF: no tissue made, none lost inside the brain
        assert (folded["gm"] + folded["wm"] <= plain["gm"] + plain["wm"] + 1e-5).all()
        before, after = (f["gm"] + f["wm"] + f["csf"] for f in (plain, folded))
        assert np.allclose(before[depth > 3.0], after[depth > 3.0], atol=1e-5)
        outer, deep = brain & (depth < 12.0), brain & (depth > 40.0)
        assert deep.sum() > 500
        # sulci: more CSF in the outer cortex, and grey matter with many more edges there
        assert folded["csf"][outer].mean() > plain["csf"][outer].mean() + 0.03
        ribbon = outer & (depth > 3.0)  # not the brain's own edge
        edges = [np.hypot(*np.gradient(f["gm"], axis=(1, 2)))[ribbon].mean() for f in (plain, folded)]
        assert edges[1] > 1.3 * edges[0]
        # deeper than any sulcus reaches, the template's tissue is kept
        changed = np.abs(folded["gm"] - plain["gm"]) > 0.02
        assert changed[deep].mean() < 0.1 and changed[outer].mean() > 0.4
    # drawn per subject: some folded, some not
    folded_subjects = [
        not np.array_equal(_fractions(i, folded_fraction=0.5)["gm"], _fractions(i)["gm"]) for i in range(10)
    ]
    assert 2 <= sum(folded_subjects) <= 8
    # the default keeps the cache key it had before the option existed; a fraction is another key
    context = SourceContext(site="a", seed=0, cache_dir=tmp_path)
    source = SyntheticSource(SyntheticOptions(profile="fastmri"), context)
    assert "folded_fraction" not in source.identity("sub-000", "t1")["options"]
    other = SyntheticSource(SyntheticOptions(profile="fastmri", folded_fraction=0.5), context)
    assert other.entry_key("sub-000", "t1") != source.entry_key("sub-000", "t1")


def test_matrix_range_blurs_subjects_acquired_at_smaller_matrices():
    def high_band(image: np.ndarray) -> float:  # energy beyond half the frequencies along either axis
        spectrum = np.abs(np.fft.fft2(image)) ** 2
        freq = np.abs(np.fft.fftfreq(image.shape[-1]))
        outer = (freq[:, None] > 0.25) | (freq[None, :] > 0.25)
        return float(spectrum[:, outer].sum() / spectrum.sum())

    for subject in range(3):
        assert np.array_equal(_varied(subject, matrix_range=(0.7, 1.0)), _varied(subject))
        full, half = _varied(subject, matrix_range=(1.0, 1.0)), _varied(subject, matrix_range=(0.4, 0.4))
        # the same subject, k-space beyond 40 % of the frequencies gone before the magnitude
        assert high_band(half) < 0.2 * high_band(full)
        assert np.corrcoef(half.ravel(), full.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("bad", [(2.0, 1.0), (0.0, 1.0), (-1.0, 1.0)])
def test_a_noise_range_out_of_order_is_refused(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="noise_range must be"):
        SyntheticOptions(profile="fastmri", noise_range=bad)


def test_template_realism_is_the_default_and_varied_changes_every_subject():
    assert np.array_equal(_subject(), _subject(realism="template"))
    varied = _subject(realism="varied")
    assert varied.shape == (2, 64, 64) and np.isfinite(varied).all() and varied.min() >= 0
    again = simulate_subject(_subject_options(realism="varied"), 0, "site", "sub-000").images["t1"]
    assert np.array_equal(varied, again)  # deterministic (simulated anew, not from _simulated)
    assert not np.allclose(varied, _subject())


def test_varied_subjects_come_in_every_orientation():
    options = SyntheticOptions(
        profile="brats", size=48, slices_per_subject=1, contrasts=["t1"], realism="varied"
    )
    wide = 0
    for i in range(12):
        image = simulate_subject(options, 0, "site", f"sub-{i:03d}").images["t1"][0]
        rows, cols = np.nonzero(image > 0)
        wide += np.ptp(cols) > np.ptp(rows)  # the template's axial head is longer front to back
    assert 2 <= wide <= 10


def _plane_image(plane: str, subject: str = "sub-000", **changes) -> np.ndarray:
    """One noise-free slice of a subject in the template's pose, its slices in ``plane``."""
    options = SyntheticOptions(
        profile="fastmri", size=64, slices_per_subject=1, contrasts=["t1"], noise_scale=0.0,
        planes=[plane], **changes,
    )  # fmt: skip
    return simulate_subject(options, 0, "site", subject).images["t1"][0]


def test_axial_planes_are_the_default_and_change_nothing(tmp_path):
    from data.sources.base import SourceContext
    from data.sources.synthetic import SyntheticSource

    assert SyntheticOptions(profile="fastmri").planes == ["axial"]
    assert np.array_equal(_subject(planes=["axial"]), _subject())
    assert np.array_equal(_subject(realism="varied", planes=["axial"]), _subject(realism="varied"))
    # the default keeps the cache key it had before the option existed; another choice has its own
    context = SourceContext(site="a", seed=0, cache_dir=tmp_path)
    key = SyntheticSource(SyntheticOptions(profile="fastmri"), context).entry_key("sub-000", "t1")
    assert "planes" not in SyntheticSource(SyntheticOptions(profile="fastmri"), context).identity(
        "sub-000", "t1"
    )["options"]  # fmt: skip
    sagittal = SyntheticSource(SyntheticOptions(profile="fastmri", planes=["sagittal"]), context)
    assert sagittal.entry_key("sub-000", "t1") != key


def test_coronal_and_sagittal_slices_show_the_head_from_the_neck_up():
    axial, coronal, sagittal = (_plane_image(p) for p in ("axial", "coronal", "sagittal"))
    for image in (axial, coronal, sagittal):
        assert np.isfinite(image).all() and image.min() >= 0
    head = {name: image > 0.05 * image.max() for name, image in
            (("axial", axial), ("coronal", coronal), ("sagittal", sagittal))}  # fmt: skip
    # coronal and sagittal slices run from above the vertex (an empty top row) down through the neck to
    # the field of view's lower edge
    for plane in ("coronal", "sagittal"):
        assert head[plane][-1].sum() >= 5 and not head[plane][0].any(), plane
    # the head is longer front to back (axial rows, sagittal columns) than left to right (coronal columns)
    width = {name: int(mask.sum(axis=1).max()) for name, mask in head.items()}
    length_axial = int(head["axial"].sum(axis=0).max())
    assert width["sagittal"] > 1.1 * width["coronal"] and length_axial > 1.1 * width["axial"]
    # a tumour site's lesions still appear in the other planes (brats: skull-stripped, lesions on)
    brats = SyntheticOptions(profile="brats", size=48, slices_per_subject=4, contrasts=["t2"],
                             noise_scale=0.0, planes=["sagittal"])  # fmt: skip
    subject = simulate_subject(brats, 0, "site", "sub-000")
    assert np.isfinite(subject.images["t2"]).all() and subject.images["t2"][:, 0].max() == 0


def test_each_subject_draws_one_of_the_planes():
    from data.simulation.anatomy import site_maps

    def options(*planes: str) -> SyntheticOptions:
        return SyntheticOptions(profile="fastmri", size=48, slices_per_subject=1, contrasts=["t1"],
                                realism="varied", planes=list(planes))  # fmt: skip

    both = options("axial", "sagittal")
    maps = site_maps(PROFILES["fastmri"], 48, ("axial", "sagittal"))
    sagittal = 0
    for i in range(12):

        def image(o: SyntheticOptions, i: int = i) -> np.ndarray:
            return simulate_subject(o, 0, "site", f"sub-{i:03d}", maps).images["t1"]

        drawn = image(both)
        # the subject is the one a single-plane site makes, in the plane it drew
        matches = [p for p in ("axial", "sagittal") if np.array_equal(drawn, image(options(p)))]
        assert len(matches) == 1, i
        sagittal += matches == ["sagittal"]
    assert 2 <= sagittal <= 10
    assert np.array_equal(
        simulate_subject(options("axial"), 0, "site", "sub-000").images["t1"],
        simulate_subject(options("axial"), 0, "site", "sub-000", maps).images["t1"],
    )


@pytest.mark.parametrize(
    ("planes", "message"),
    [("[axial, oblique]", "sites.0.source.planes.1"), ("[]", "sites.0.source.planes"),
     ("[axial, axial]", "planes must not repeat"), ("sagittal", "sites.0.source.planes")],
)  # fmt: skip
def test_a_bad_plane_is_one_error_naming_the_key(planes, message):
    from assembly.config import load_config
    from utils.errors import UserError

    config = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    with pytest.raises(UserError) as info:
        load_config(config, [f"sites.0.source.planes={planes}"])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_acquisition_matrix_keeps_only_the_acquired_frequencies():
    rng = np.random.default_rng(0)
    image = rng.random((1, 32, 32)).astype(np.float32)
    kept = np.fft.fft2(acquisition_matrix(image, 0.5).astype(np.complex64))
    assert np.allclose(acquisition_matrix(image, 1.0), image, atol=1e-5)
    freq = np.abs(np.fft.fftfreq(32) * 32)
    outside = (freq[:, None] > 8) | (freq[None, :] > 8)
    # magnitude is not linear, so a little energy returns outside; far less than the image had there
    before = np.abs(np.fft.fft2(image[0]))[outside].sum()
    assert np.abs(kept[0])[outside].sum() < 0.5 * before


def test_real_volumes_are_fitted_to_a_sites_pixel_size_and_matrix():
    volume = np.zeros((2, 50, 50), dtype=np.float32)
    volume[:, 10:40, 15:35] = 3.0
    fitted = realism.fit_to_site(volume, pixel_mm=2.0, site_mm=1.0, size=64)
    inside = fitted[0] > 0.5  # 30 x 20 pixels at 2 mm -> 60 x 40 at 1 mm, centred
    assert fitted.shape == (2, 64, 64) and 0.8 < np.median(fitted[0][inside]) <= 1.0
    rows, cols = np.nonzero(inside)
    assert np.ptp(rows) + 1 == pytest.approx(60, abs=2) and np.ptp(cols) + 1 == pytest.approx(40, abs=2)
    small = realism.fit_to_site(volume, pixel_mm=1.0, site_mm=1.0, size=80)  # zero-padded
    assert small.shape == (2, 80, 80) and small[:, :15].max() == 0


def test_the_tuning_set_shares_no_file_with_the_test_set_and_reads_like_it():
    test_files = {(v.package, v.path) for v in realism.TEST_VOLUMES.values()}
    tuning_files = {(v.package, v.path) for v in realism.TUNING_VOLUMES.values()}
    assert test_files and tuning_files and not test_files & tuning_files
    for name, volume in realism.TUNING_VOLUMES.items():
        data = realism.read_real(volume)
        start, stop = volume.slices
        assert data.ndim == 3 and data.shape[0] == stop - start, name
        assert data.dtype == np.float32 and data.min() >= 0 and data.max() > 0, name
    # a skull-stripped site gets a tuning volume too, so every site is tuned on something
    assert any(v.skull_stripped for v in realism.TUNING_VOLUMES.values())


def test_tuning_variants_are_the_same_scan_turned_or_from_a_smaller_matrix():
    stored = realism.read_real(realism.TUNING_VOLUMES["epi"])
    turned = realism.read_real(realism.TUNING_VOLUMES["epi_turned"])
    assert turned.shape == (stored.shape[0], stored.shape[2], stored.shape[1])
    assert np.array_equal(turned, np.rot90(stored, 1, axes=(1, 2)))
    coarse = realism.read_real(realism.TUNING_VOLUMES["epi_half_matrix"])
    assert coarse.shape == stored.shape

    def outer_energy(x: np.ndarray) -> float:
        k = np.abs(np.fft.fftshift(np.fft.fft2(x), axes=(1, 2))) ** 2
        h, w = x.shape[1:]
        k[:, h // 4 : h - h // 4, w // 4 : w - w // 4] = 0
        return float(k.sum())

    assert outer_energy(coarse) < 0.1 * outer_energy(stored)  # the magnitude returns a little
    assert np.corrcoef(coarse.ravel(), stored.ravel())[0, 1] > 0.9  # the same anatomy, blurred


def test_the_test_set_reads_from_three_or_more_packages_and_labels_its_averages():
    volumes = realism.TEST_VOLUMES
    assert len({v.package for v in volumes.values()}) >= 3
    kinds = {realism_volumes.SCAN, realism_volumes.REPEATED, realism_volumes.AVERAGE}
    assert {v.kind for v in volumes.values()} <= kinds
    assert any(v.kind == realism_volumes.AVERAGE for v in volumes.values())  # pydeface's mean head
    assert not any(v.package == "nilearn" for v in volumes.values())  # the simulator's own anatomy
    for name, volume in volumes.items():
        assert volume.contrast and volume.licence, name
        # a brain-only copy names a whole-head volume of the set, and is read from the same package
        twin = volumes.get(volume.stripped_from) if volume.stripped_from else None
        assert not volume.stripped_from or (twin and not twin.skull_stripped and volume.skull_stripped), name
        assert not twin or twin.package == volume.package, name
    # every volume at hand reads (a Debian package's when it is installed: test_realism_debian.py)
    for name, volume in realism.available(volumes, log=lambda _: None).items():
        data = realism.read_real(volume)
        if volume.slices is not None:
            start, stop = volume.slices
            assert data.shape[0] == len(range(start, stop, volume.step)), name
        assert data.ndim == 3 and data.dtype == np.float32 and data.min() >= 0 and data.max() > 0, name
    # every site is tested on something: the skull-stripped one on the brain-only volumes
    assert sum(v.skull_stripped for v in volumes.values()) >= 3


def test_matplotlib_slice_is_read_as_its_own_mri_example_reads_it():
    slice_ = realism.read_real(realism.TEST_VOLUMES["s1045"])
    path = realism.package_folder("matplotlib") / realism.TEST_VOLUMES["s1045"].path
    import gzip

    native = np.frombuffer(gzip.decompress(path.read_bytes()), np.uint16).reshape(256, 256)
    # matplotlib's example reads native 16-bit words; every pixel is a byte in the high half
    assert slice_.shape == (1, 256, 256) and np.array_equal(slice_[0] * 256, native.astype(np.float32))
    assert slice_.max() == 215 and 0.4 < np.mean(slice_ == 0) < 0.7  # a head on a zeroed background


def test_the_real_volumes_table_is_what_the_module_writes():
    assert realism_volumes.TABLE_PATH.read_text() == realism_volumes.real_volumes_markdown(), (
        "docs/results/realism/REAL_VOLUMES.md is stale: python bench/realism_volumes.py"
    )
    text = realism_volumes.TABLE_PATH.read_text()
    for name in list(realism.TEST_VOLUMES) + list(realism.TUNING_VOLUMES):
        assert f"| `{name}` |" in text
    assert "population average" in text and "Searched and not used" in text


def _disc_on_noise(
    seed: int = 0, size: int = 48, radius: int = 14, sigma: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """A (1, size, size) 'head': a textured disc with a dark hole (a ventricle) on Rayleigh noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2 + 0.5
    disc = np.hypot(yy, xx) < radius
    image = np.where(disc, 0.6 + 0.3 * np.sin(xx / 2.0) * np.cos(yy / 3.0), 0.0)
    image[np.hypot(yy, xx) < 3] = 0.0  # dark inside: filled into the head
    noise = np.abs(rng.normal(0, sigma, (size, size)) + 1j * rng.normal(0, sigma, (size, size)))
    return (image + noise)[None].astype(np.float64), disc


def test_head_mask_finds_the_head_on_noise_with_its_dark_interior():
    image, disc = _disc_on_noise()
    from scipy import ndimage

    mask = realism_report.head_mask(image)[0]
    # the whole disc, hole filled, and at most its smoothed edge around it (within 3 pixels)
    assert mask[disc].all() and not mask[ndimage.distance_transform_edt(~disc) > 3].any()
    assert mask[24, 24] and not mask[:6, :6].any()
    assert not realism_report.head_mask(np.zeros((1, 16, 16))).any()  # nothing there: no head
    # a background as noisy as a diffusion-weighted image's (its mean an eighth of the brightest
    # tissue, above a tenth of the 99th percentile): still the disc, not the whole image
    noisy, _ = _disc_on_noise(sigma=0.1)
    mask = realism_report.head_mask(noisy)[0]
    assert (mask & disc).sum() / (mask | disc).sum() > 0.85 and not mask[:6, :6].any()


def test_region_ssim_places_a_loss_in_the_background_and_adds_up_to_the_whole_image():
    from scipy import ndimage
    from skimage.metrics import structural_similarity

    from utils.metrics import ssim

    gt, disc = _disc_on_noise()
    mask = disc[None]
    # structure painted into an empty background: the head is exact, the background is not
    painted = gt.copy()
    painted[0][~disc] += 0.15 * (np.indices(disc.shape).sum(0) % 4 == 0)[~disc]
    regions = realism_report.region_ssim(gt, painted, mask)
    assert regions["ssim_head"] > 0.9 > regions["ssim_background"]
    assert regions["ssim"] == pytest.approx(ssim(gt, painted), abs=1e-12)  # the reported metric, unchanged
    # a blurred head on an exact background: the other way round
    blurred = gt.copy()
    blurred[0][disc] = ndimage.gaussian_filter(gt[0], 2)[disc]
    other = realism_report.region_ssim(gt, blurred, mask)
    assert other["ssim_background"] > other["ssim_head"]
    # the two regions are a split of skimage's map without its border: weighted, they give the mean
    mean, full = structural_similarity(gt[0], blurred[0], data_range=float(gt.max()), full=True)
    inner = mask[0][3:-3, 3:-3]
    n_head, n_all = inner.sum(), inner.size
    recombined = (other["ssim_head"] * n_head + other["ssim_background"] * (n_all - n_head)) / n_all
    assert recombined == pytest.approx(mean, abs=1e-12)
    assert other["head_fraction"] == pytest.approx(n_head / n_all)
    whole_head = realism_report.region_ssim(gt, blurred, np.ones_like(mask))  # no background at all
    assert whole_head["ssim_background"] is None


def _record(name: str, psnr_gain: float, ssim_gain: float) -> dict:
    zf = {"psnr": 30.0, "ssim": 0.8, "ssim_head": 0.7, "ssim_background": 0.9}
    model = {"psnr": 30.0 + psnr_gain, "ssim": 0.8 + ssim_gain, "ssim_head": 0.75, "ssim_background": None}
    return {"volume": name, "head_fraction": 0.4, "zero_filled": zf, "model": model}


def test_distribution_counts_strict_wins_and_names_the_worst_volume():
    records = [_record("a", 1.0, 0.02), _record("b", 0.5, 0.0), _record("wide", 2.0, -0.2)]
    d = realism.distribution(records)
    assert d["volumes"] == 3 and d["psnr_wins"] == 3 and d["ssim_wins"] == 1  # a tie is not a win
    assert d["psnr_worst"] == {"volume": "b", "gain": pytest.approx(0.5)}
    assert d["ssim_worst"] == {"volume": "wide", "gain": pytest.approx(-0.2)}
    table = realism.distribution_table({"fastmri": records}, {"wide": " (average)"})
    assert "| fastmri | 3 / 3 | b (+0.50 dB) | 1 / 3 | wide (average) (-0.200) |" in table
    rows = realism.volumes_table({"fastmri": records}, {"wide": " (average)"})
    assert "| fastmri | wide (average) | 40 % | 30.00 → 32.00 (+2.00) | 0.800 → 0.600 (-0.200) |" in rows
    assert "0.700 → 0.750 (+0.050) | – |" in rows  # no background pixel: a dash, not a number
    assert realism.distribution([]) == {
        "volumes": 0, "psnr_wins": 0, "psnr_worst": None, "ssim_wins": 0, "ssim_worst": None
    }  # fmt: skip


def test_a_volume_record_scores_head_and_background_of_model_and_zero_filled():
    gt, disc = _disc_on_noise()
    zero_filled = gt + 0.05 * np.roll(gt, 7, axis=2)  # a ghost, as a 1D mask leaves
    scores = {"model": {"psnr": 31.0, "ssim": 0.9, "nmse": 0.01}, "zero_filled": {"psnr": 28.0, "ssim": 0.7}}
    record = realism.volume_record("v", scores, (gt.copy(), gt, zero_filled))
    assert record["volume"] == "v" and record["model"]["psnr"] == 31.0 and "nmse" not in record["model"]
    assert record["model"]["ssim_head"] == pytest.approx(1.0) and record["model"]["ssim_background"] == 1.0
    assert record["zero_filled"]["ssim_background"] < 1.0
    assert 0.2 < record["head_fraction"] < 0.5


def test_a_missing_real_volume_is_one_line_naming_the_file(tmp_path, monkeypatch):
    from utils.errors import UserError

    monkeypatch.setattr(realism_volumes, "package_folder", lambda package: tmp_path)
    with pytest.raises(UserError, match=r"real volume .*example4d.nii.gz is missing"):
        realism.read_real(realism.TUNING_VOLUMES["epi"])


def test_gains_are_model_minus_zero_filled_on_the_diagonal():
    results = {
        "test_sites": ["a"],
        "cross_site": {"a": {"a": {"psnr": 30.0, "ssim": 0.8}}, "b": {"a": {"psnr": 10.0, "ssim": 0.1}}},
        "zero_filled": {"a": {"psnr": 27.5, "ssim": 0.85}},
    }
    gain = realism.gains(results)["a"]
    assert gain["psnr_gain"] == pytest.approx(2.5) and gain["ssim_gain"] == pytest.approx(-0.05)
    assert "volumes" not in gain and realism.verdict(gain) == "**no**"  # the SSIM mean is below zero


def test_gain_intervals_over_volumes_equal_scipy_and_decide_the_verdict():
    from scipy import stats

    volumes = {
        f"v{i}": {"model": {"psnr": 30.0 + d, "ssim": 0.8 + s}, "zero_filled": {"psnr": 30.0, "ssim": 0.8}}
        for i, (d, s) in enumerate([(2.0, 0.02), (2.5, 0.025), (3.5, 0.03)])
    }
    results = {
        "test_sites": ["a"],
        "cross_site": {"a": {"a": {"psnr": 30.0 + 8 / 3, "ssim": 0.825}}},
        "zero_filled": {"a": {"psnr": 30.0, "ssim": 0.8}},
        "own_volumes": {"a": volumes},
    }
    gain = realism.gains(results)["a"]
    psnr = np.array([2.0, 2.5, 3.5])
    expected = stats.t.ppf(0.975, 2) * psnr.std(ddof=1) / np.sqrt(3)
    assert gain["volumes"] == 3 and gain["psnr_gain_ci"] == pytest.approx(expected)
    assert realism.verdict(gain) == "yes"  # both intervals above zero
    assert "+2.67 ± 1.90 dB / +0.025 ± 0.012" in realism.table({"a": gain}, {"a": gain})
    volumes["v0"]["model"]["ssim"] = 0.7  # SSIM gains -0.1, +0.025, +0.03: the interval holds zero
    assert realism.verdict(realism.gains(results)["a"]) == "not detectable"
    results["own_volumes"]["a"] = {"v0": volumes["v0"]}  # one volume: no interval, the means decide
    one = realism.gains(results)["a"]
    assert one["psnr_gain_ci"] is None and "(1 vol.)" in realism.table({"a": one}, {"a": one})


def _phase_source(tmp_path, phase: bool):
    from data.sources.base import SourceContext
    from data.sources.synthetic import SyntheticSource

    options = SyntheticOptions(
        profile="fastmri",
        size=48,
        slices_per_subject=2,
        contrasts=["t1"],
        subjects={"train": 1, "val": 1, "test": 1},
        phase=phase,
    )
    source = SyntheticSource(options, SourceContext(site="a", seed=0, cache_dir=tmp_path))
    source.prepare()
    return source


def test_phase_is_smooth_non_zero_and_breaks_conjugate_symmetry(tmp_path):
    from data.fourier import fft2c

    plain, phased = _phase_source(tmp_path, False), _phase_source(tmp_path, True)
    volume = plain.volumes("train")[0]
    magnitude, image = plain.read_slice(volume, 1), phased.read_slice(volume, 1)
    assert magnitude.dtype == np.float32 and image.dtype == np.complex64
    assert np.allclose(np.abs(image), magnitude, rtol=1e-5, atol=1e-6)  # the phase leaves the magnitude
    head = magnitude > 0.2 * magnitude.max()
    angle = np.angle(image)
    assert np.std(angle[head]) > 0.3  # non-zero and not constant
    # smooth: neighbouring pixels inside the head differ by far less than a radian
    step = np.abs(np.angle(image[1:, :] * np.conj(image[:-1, :])))[head[1:, :] & head[:-1, :]]
    assert np.median(step) < 0.15
    assert np.array_equal(image, phased.read_slice(volume, 1))  # deterministic

    def asymmetry(x: np.ndarray) -> float:
        import torch

        k = fft2c(torch.from_numpy(x.astype(np.complex64))).numpy()
        # centred k-space of an even-sized image: k(-f) sits at index (N - i) mod N of the flipped grid
        mirrored = np.conj(np.roll(np.flip(k, (0, 1)), 1, (0, 1)))
        return float(np.linalg.norm(k - mirrored) / np.linalg.norm(k))

    assert asymmetry(magnitude) < 1e-4  # a real image's k-space is conjugate-symmetric
    assert asymmetry(image) > 0.3


def test_coil_maps_have_unit_root_sum_of_squares_and_give_the_magnitude_back(tmp_path):
    import torch

    from data.fourier import ifft2c, rss
    from data.sources.base import KspaceSlice, SourceContext
    from data.sources.synthetic import SyntheticSource

    options = SyntheticOptions(
        profile="sms",
        size=48,
        slices_per_subject=2,
        contrasts=["t1"],
        subjects={"train": 1, "val": 1, "test": 1},
        coils=4,
    )
    source = SyntheticSource(options, SourceContext(site="a", seed=0, cache_dir=tmp_path))
    source.prepare()
    volume = source.volumes("test")[0]
    sample = source.read_slice(volume, 0)
    assert isinstance(sample, KspaceSlice) and sample.kspace.shape == (4, 48, 48)
    coil_images = ifft2c(torch.from_numpy(sample.kspace))
    magnitude = read_magnitude(tmp_path, volume)
    assert np.allclose(rss(coil_images, 0).numpy(), magnitude, atol=1e-4 * magnitude.max())
    head = magnitude > 0.2 * magnitude.max()
    sensitivities = coil_images.abs().numpy()[:, head] / magnitude[head]
    assert np.allclose((sensitivities**2).sum(axis=0), 1.0, atol=1e-3)
    assert sensitivities.std(axis=1).min() > 0.05  # each coil sees the head unevenly


def read_magnitude(tmp_path, volume) -> np.ndarray:
    from data.sources.base import SourceContext
    from data.sources.synthetic import SyntheticSource

    options = SyntheticOptions(
        profile="sms",
        size=48,
        slices_per_subject=2,
        contrasts=["t1"],
        subjects={"train": 1, "val": 1, "test": 1},
    )
    source = SyntheticSource(options, SourceContext(site="a", seed=0, cache_dir=tmp_path))
    source.prepare()
    return source.read_slice(volume, 0)


# -- the command line: bad input is one line, before any training ---------------------------------------
def _one_line_error(capsys, argv: list[str], needle: str) -> None:
    capsys.readouterr()
    assert realism.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_existing_run_is_neither_trained_over_nor_reused_for_another_config(
    tmp_path, capsys, tiny_config_file
):
    config = tiny_config_file(rounds=1)
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text("round,site,split\n")  # an unfinished run
    _one_line_error(capsys, ["--config", str(config)], f"{run_dir} already holds an unfinished run")
    assert _files(run_dir) == {"metrics.csv": b"round,site,split\n"}
    # A finished run (results.json) is reused only for the config it was trained with.
    (run_dir / "config.yaml").write_text(config.read_text())
    (run_dir / "results.json").write_text("{}")
    before = _files(run_dir)
    _one_line_error(capsys, ["--config", str(config), "fl.rounds=3"], "fl.rounds (1 -> 3)")
    assert _files(run_dir) == before


def test_output_folder_and_run_options_are_checked_before_training(tmp_path, capsys, tiny_config_file):
    config = tiny_config_file(rounds=1)
    file = tmp_path / "file"
    file.write_text("")
    _one_line_error(capsys, ["--config", str(config), "--out", str(file)], f"--out: {file} is a file")
    assert not (tmp_path / "runs").exists()
    _one_line_error(capsys, ["--run", str(tmp_path), "fl.rounds=3"], "--run: fl.rounds=3 would be ignored")
    _one_line_error(capsys, ["--run", str(tmp_path), "--config", str(config)], "would be ignored")


def test_a_second_check_writing_the_same_folder_is_refused(tmp_path, capsys):
    import subprocess

    out = tmp_path / "realism"
    script = f"from utils.lock import lock_run; lock_run({str(out)!r}); print('held', flush=True); "
    holder = subprocess.Popen(
        [sys.executable, "-c", script + "import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        _one_line_error(capsys, ["--run", str(tmp_path / "run"), "--out", str(out)],
                        f"another process (PID {holder.pid}) is writing this run; wait for it to end or give "
                        "another --out")  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
