"""Undersampling masks: registry validation, the invariants every kind keeps, each kind's pattern, files."""

from __future__ import annotations

import math
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from data import masks
from data.masks import MASKS, MaskOptions, acceleration_of, build_mask, create, mask_kinds
from utils.errors import UserError

GENERATED = ["random_1d", "equispaced_1d", "uniform_1d", "random_2d", "radial_2d", "poisson_2d"]
ONE_D = ["random_1d", "equispaced_1d", "uniform_1d"]
TWO_D = ["random_2d", "radial_2d", "poisson_2d"]
SEEDED = ["random_1d", "equispaced_1d", "random_2d", "radial_2d", "poisson_2d"]
EXACT = ["uniform_1d", "random_2d", "radial_2d", "poisson_2d"]  # within 10 % on every draw
SHAPES = [(95, 96), (128, 128), (192, 192), (240, 240), (320, 320), (64, 61)]
ACCELERATIONS = [2, 3, 4, 5, 6, 8]


def centre_distance(shape: tuple[int, int]) -> np.ndarray:
    """Normalised distance from DC (1 at the middle of each edge)."""
    height, width = shape
    y = (np.arange(height) - height // 2) / (height / 2)
    x = (np.arange(width) - width // 2) / (width / 2)
    return np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)


def centre_region(kind: str, shape: tuple[int, int], center_fraction: float = 0.08) -> np.ndarray:
    """The region every mask of ``kind`` must sample, computed independently of the module."""
    height, width = shape
    region = np.zeros(shape, dtype=bool)
    if kind in ONE_D:
        count = max(1, round(width * center_fraction))
        start = (width - count + 1) // 2
        region[:, start : start + count] = True
    else:
        region = centre_distance(shape) <= center_fraction
    region[height // 2, width // 2] = True
    return region


def check_invariants(kind: str, shape: tuple[int, int], acceleration: float, seed: int) -> np.ndarray:
    """Shape, dtype, centre, determinism, and (for exact kinds) the acceleration of one draw."""
    mask = create(kind, acceleration=acceleration)(shape, seed)
    assert mask.shape == shape and mask.dtype == np.bool_
    assert mask[centre_region(kind, shape)].all()
    assert np.array_equal(mask, create(kind, acceleration=acceleration)(shape, seed))
    if kind in ONE_D:
        assert (mask == mask[:1]).all(), "1D masks select whole columns"
    if kind in EXACT:
        assert acceleration_of(mask) == pytest.approx(acceleration, rel=0.1)
    return mask


# ------------------------------------------------------------------------------------------ registry


def test_registry_lists_every_kind_with_a_docstring():
    assert mask_kinds() == [*GENERATED, "file"]
    assert set(masks.MASKS) == set(mask_kinds())
    for kind, (options_cls, pattern_cls) in masks.MASKS.items():
        assert pattern_cls.__doc__ and len(pattern_cls.__doc__.split()) > 10
        assert options_cls.__doc__ and options_cls.model_fields["kind"].default == kind
        assert kind in masks.__doc__


def test_unknown_kind_lists_the_known_kinds():
    with pytest.raises(UserError, match="spiral") as err:
        create("spiral")
    for kind in mask_kinds():
        assert kind in str(err.value)
    with pytest.raises(UserError, match="unknown"):
        create(["random_1d"])


def test_unknown_parameter_names_it_and_the_accepted_ones():
    with pytest.raises(UserError, match="'sigma'") as err:
        create("random_1d", acceleration=4, sigma=0.2)
    assert "acceleration, center_fraction" in str(err.value)
    with pytest.raises(UserError, match="golden_angle"):
        create("poisson_2d", golden_angle=True)


@pytest.mark.parametrize(
    ("kind", "params", "name"),
    [
        ("random_1d", {"acceleration": 0.5}, "acceleration"),
        ("random_1d", {"acceleration": "4"}, "acceleration"),
        ("uniform_1d", {"acceleration": True}, "acceleration"),
        ("random_2d", {"acceleration": float("nan")}, "acceleration"),
        ("radial_2d", {"acceleration": float("inf")}, "acceleration"),
        ("equispaced_1d", {"center_fraction": 0.0}, "center_fraction"),
        ("poisson_2d", {"center_fraction": 1.5}, "center_fraction"),
        ("random_1d", {"center_fraction": "0.1"}, "center_fraction"),
        ("random_2d", {"sigma": 0}, "sigma"),
        ("poisson_2d", {"falloff": -1}, "falloff"),
        ("equispaced_1d", {"exact_fraction": "yes"}, "exact_fraction"),
        ("radial_2d", {"golden_angle": 1}, "golden_angle"),
    ],
)
def test_impossible_values_name_the_parameter(kind, params, name):
    with pytest.raises(UserError, match=f"'{name}'"):
        create(kind, **params)


@pytest.mark.parametrize(("kind", "fraction"), [("random_1d", 0.3), ("radial_2d", 0.7)])
def test_a_centre_larger_than_the_sampling_fraction_is_refused(kind, fraction):
    with pytest.raises(UserError, match="center_fraction"):
        create(kind, acceleration=4, center_fraction=fraction)
    create(kind, acceleration=2, center_fraction=fraction)


def test_integer_parameters_are_stored_as_floats_and_defaults_apply():
    mask_func = create("random_2d", acceleration=4)
    assert mask_func == masks.Random2D(acceleration=4.0, center_fraction=0.08, sigma=0.4)
    assert isinstance(mask_func.acceleration, float)


# ----------------------------------------------------------------------------------- typed options

OPTIONS = TypeAdapter(MaskOptions)


def options(kind: str, **params):
    """``kind``'s typed options from a plain mapping, as a config's ``mask`` section is validated."""
    return OPTIONS.validate_python({"kind": kind, **params})


@pytest.fixture
def mask_file(tmp_path) -> str:
    """A 20 x 20 ``.npy`` mask sampling every 4th column (acceleration 4)."""
    mask = np.zeros((20, 20), dtype=bool)
    mask[:, ::4] = True
    path = tmp_path / "mask.npy"
    np.save(path, mask)
    return str(path)


def required(kind: str, mask_file: str) -> dict:
    """The parameters ``kind`` cannot do without."""
    return {"path": mask_file} if kind == "file" else {}


def test_defaults_resolve_to_the_numbers_the_patterns_always_used(mask_file):
    pattern = {"acceleration": 4.0, "center_fraction": 0.08}
    expected = {
        "random_1d": pattern,
        "equispaced_1d": {**pattern, "exact_fraction": True},
        "uniform_1d": pattern,
        "random_2d": {**pattern, "sigma": 0.4},
        "radial_2d": {**pattern, "golden_angle": False},
        "poisson_2d": {**pattern, "falloff": 2.0},
        "file": {"path": mask_file, "acceleration": None},
    }
    assert list(expected) == mask_kinds()
    for kind, params in expected.items():
        resolved = options(kind, **required(kind, mask_file))
        assert resolved.redraw_train is True and resolved.fixed is False
        dumped = resolved.model_dump(exclude={"kind", "redraw_train", "fixed"})
        assert dumped == params
        numbers = [
            value for key, value in dumped.items() if key not in ("path", "exact_fraction", "golden_angle")
        ]
        assert all(type(value) is float for value in numbers if value is not None)
    # null (configs written before the typed options) keeps the kind's default
    assert options("random_2d", acceleration=None, center_fraction=None) == options("random_2d")


@pytest.mark.parametrize("kind", mask_kinds())
def test_every_kind_rejects_an_unknown_key(kind, mask_file):
    with pytest.raises(ValidationError) as err:
        options(kind, **required(kind, mask_file), spiral_arms=3)
    assert [(e["type"], e["loc"]) for e in err.value.errors()] == [("extra_forbidden", (kind, "spiral_arms"))]
    with pytest.raises(UserError, match="unknown parameter 'spiral_arms'"):
        create(kind, **required(kind, mask_file), spiral_arms=3)


NAN, INF = float("nan"), float("inf")
NOT_BOOLS = (1, 0, "yes", "true", None)  # flags take true or false only
# (kind or "*", field) -> (refused values, accepted values); every field of every kind must be listed
BOUNDS: dict[tuple[str, str], tuple[tuple, tuple]] = {
    ("*", "acceleration"): ((0.999, 0, -2, NAN, INF, "4", True), (1, 1.0, 2.5, 8)),
    ("*", "center_fraction"): ((0.0, -0.1, 1.0001, NAN, "0.1", True), (1e-6, 0.08, 1.0)),
    ("*", "redraw_train"): (("maybe", 2, None, [True]), (True, False)),
    ("*", "fixed"): (("maybe", 2, None, [True]), (True, False)),
    ("equispaced_1d", "exact_fraction"): (NOT_BOOLS, (True, False)),
    ("radial_2d", "golden_angle"): (NOT_BOOLS, (True, False)),
    ("random_2d", "sigma"): ((0, -0.1, NAN, INF, "0.4", True), (1e-6, 0.4, 10)),
    ("poisson_2d", "falloff"): ((-1e-9, -1, NAN, INF, "2", True), (0, 0.5, 6)),
    ("file", "path"): (("", None, 3), ("<mask_file>",)),
    ("file", "acceleration"): ((0.5, NAN, INF, "4", True, 6), (None, 4, 4.3)),  # the file's is 4
}
FIELDS = [(kind, field) for kind, (cls, _) in MASKS.items() for field in cls.model_fields if field != "kind"]


@pytest.mark.parametrize(("kind", "field"), FIELDS)
def test_every_field_enforces_its_bounds(kind, field, mask_file):
    refused, accepted = BOUNDS[(kind, field)] if (kind, field) in BOUNDS else BOUNDS[("*", field)]
    base = required(kind, mask_file)
    if field == "center_fraction":
        base["acceleration"] = 1  # a centre of 1.0 fits only without undersampling
    for value in accepted:
        value = mask_file if value == "<mask_file>" else value
        assert options(kind, **{**base, field: value}) is not None
    for value in refused:
        with pytest.raises(ValidationError) as err:
            options(kind, **{**base, field: value})
        assert [e["loc"] for e in err.value.errors()] == [(kind, field)], value
        with pytest.raises(UserError, match=f"'{field}'|{field} "):
            create(kind, **{**base, field: value})


@pytest.mark.parametrize(
    ("kind", "centre", "share"), [("random_1d", 0.3, 0.3), ("radial_2d", 0.7, math.pi / 4 * 0.7**2)]
)
def test_the_centre_check_names_center_fraction_at_the_exact_limit(kind, centre, share):
    """A centre taking ``share`` of k-space fits up to R = 1 / share (a column fraction, or an ellipse)."""
    options(kind, acceleration=1 / share, center_fraction=centre)
    with pytest.raises(ValidationError) as err:
        options(kind, acceleration=1.001 / share, center_fraction=centre)
    assert [e["loc"] for e in err.value.errors()] == [(kind, "center_fraction")]
    assert "keeps more than 1/acceleration" in err.value.errors()[0]["msg"]


def test_a_file_that_does_not_fit_names_path_or_acceleration(tmp_path, mask_file):
    with pytest.raises(ValidationError) as err:
        options("file", path=str(tmp_path / "absent.npy"))
    assert [e["loc"] for e in err.value.errors()] == [("file", "path")]
    assert "absent.npy: not found" in err.value.errors()[0]["msg"]
    with pytest.raises(ValidationError) as err:
        options("file", path=mask_file, acceleration=6)
    assert [e["loc"] for e in err.value.errors()] == [("file", "acceleration")]
    assert options("file", path=Path(mask_file)).path == mask_file


@pytest.mark.parametrize(
    ("kind", "params", "pattern"),
    [
        ("random_1d", {}, masks.Random1D(acceleration=4.0, center_fraction=0.08)),
        ("random_1d", {"acceleration": 8, "center_fraction": 0.04}, masks.Random1D(8.0, 0.04)),
        ("equispaced_1d", {}, masks.Equispaced1D(4.0, 0.08, exact_fraction=True)),
        ("equispaced_1d", {"acceleration": 3, "exact_fraction": False}, masks.Equispaced1D(3.0, 0.08, False)),
        ("uniform_1d", {"acceleration": 5.5}, masks.Uniform1D(5.5, 0.08)),
        ("random_2d", {}, masks.Random2D(4.0, 0.08, sigma=0.4)),
        ("random_2d", {"acceleration": 6, "sigma": 0.25}, masks.Random2D(6.0, 0.08, 0.25)),
        ("radial_2d", {}, masks.Radial2D(4.0, 0.08, golden_angle=False)),
        ("radial_2d", {"acceleration": 3, "golden_angle": True}, masks.Radial2D(3.0, 0.08, True)),
        ("poisson_2d", {}, masks.Poisson2D(4.0, 0.08, falloff=2.0)),
        (
            "poisson_2d",
            {"acceleration": 6, "center_fraction": 0.1, "falloff": 0.5},
            masks.Poisson2D(6.0, 0.1, 0.5),
        ),
        ("uniform_1d", {"acceleration": 1}, masks.Uniform1D(1.0, 0.08)),
    ],
)
def test_masks_built_from_typed_options_equal_the_patterns_bit_for_bit(kind, params, pattern):
    mask_func = build_mask(options(kind, **params, redraw_train=False))
    assert type(mask_func) is type(pattern) and mask_func == pattern
    for shape in [(64, 61), (96, 96), (128, 120)]:
        for seed in [0, 7, 2**40 + 3]:
            built, direct = mask_func(shape, seed), pattern(shape, seed)
            assert built.dtype == direct.dtype == np.bool_ and built.tobytes() == direct.tobytes()


def test_file_masks_built_from_typed_options_equal_the_file(mask_file):
    mask_func = build_mask(options("file", path=mask_file, acceleration=4))
    assert mask_func == masks.FileMask(path=mask_file, acceleration=4.0)
    assert np.array_equal(mask_func((20, 20), 3), np.load(mask_file))


# ---------------------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("kind", GENERATED)
def test_every_kind_on_every_shape_and_acceleration(kind):
    for shape in SHAPES:
        for acceleration in ACCELERATIONS:
            check_invariants(kind, shape, acceleration, seed=7)


@given(
    kind=st.sampled_from(GENERATED),
    height=st.integers(48, 160),
    width=st.integers(48, 160),
    acceleration=st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]) | st.floats(1.0, 8.0),
    seed=st.integers(0, 2**63 - 1),
)
@settings(max_examples=60, deadline=None)
def test_invariants_hold_for_any_shape_acceleration_and_seed(kind, height, width, acceleration, seed):
    mask = check_invariants(kind, (height, width), acceleration, seed)
    if acceleration == 1.0:
        assert mask.all()


@pytest.mark.parametrize("kind", GENERATED)
def test_acceleration_one_samples_everything(kind):
    for shape in [(64, 61), (128, 128)]:
        assert create(kind, acceleration=1)(shape, 3).all()


@pytest.mark.parametrize("kind", SEEDED)
def test_different_seeds_give_different_masks(kind):
    mask_func = create(kind, acceleration=4)
    draws = {mask_func((96, 95), seed).tobytes() for seed in range(8)}
    assert len(draws) >= 3


@pytest.mark.parametrize("kind", GENERATED)
def test_masks_pickle_and_returned_arrays_are_fresh(kind):
    mask_func = create(kind, acceleration=4)
    clone = pickle.loads(pickle.dumps(mask_func))
    assert clone == mask_func
    first = mask_func((64, 61), 5)
    first[:] = False
    assert np.array_equal(clone((64, 61), 5), mask_func((64, 61), 5))
    assert mask_func((64, 61), 5).any()


def test_mask_functions_are_cheap():
    timings = {}
    for kind in GENERATED:
        mask_func = create(kind, acceleration=4)
        mask_func((128, 128), 0)  # fill the caches
        start = time.perf_counter()
        for seed in range(1, 21):
            mask_func((128, 128), seed)
        timings[kind] = (time.perf_counter() - start) / 20
    assert max(timings[kind] for kind in ONE_D) < 1e-3, timings
    assert max(timings[kind] for kind in TWO_D) < 20e-3, timings


def test_acceleration_of_counts_sampled_points():
    mask = np.zeros((4, 8), dtype=bool)
    assert acceleration_of(mask) == float("inf")
    mask[:, :2] = True
    assert acceleration_of(mask) == 4.0


# ------------------------------------------------------------------------------------------- 1D kinds


@pytest.mark.parametrize("shape", SHAPES)
def test_random_1d_reaches_the_acceleration_on_average_over_seeds(shape):
    for acceleration in ACCELERATIONS:
        mask_func = create("random_1d", acceleration=acceleration)
        mean_columns = np.mean([mask_func(shape, seed)[0].sum() for seed in range(50)])
        assert shape[1] / mean_columns == pytest.approx(acceleration, rel=0.1)


def test_random_1d_keeps_outer_columns_with_fastmri_probability():
    width, acceleration, num_low = 200, 5.0, 16  # round(200 * 0.08)
    mask_func = create("random_1d", acceleration=acceleration)
    outer = np.ones(width, dtype=bool)
    outer[(width - num_low + 1) // 2 :][:num_low] = False
    kept = np.mean([mask_func((2, width), seed)[0][outer].mean() for seed in range(300)])
    assert kept == pytest.approx((width / acceleration - num_low) / (width - num_low), abs=0.01)


def test_equispaced_1d_is_the_centre_plus_a_lattice_with_step_r():
    width, acceleration = 128, 4
    mask_func = create("equispaced_1d", acceleration=acceleration, exact_fraction=False)
    outside = ~centre_region("equispaced_1d", (1, width))[0]
    offsets = set()
    for seed in range(20):
        columns = mask_func((3, width), seed)[0]
        offset = np.flatnonzero(columns)[0]
        lattice = np.arange(width) % acceleration == offset
        assert np.array_equal(columns[outside], lattice[outside])
        offsets.add(offset)
    assert offsets == set(range(acceleration))
    # fastMRI's equispaced masks sample more than 1/R (the centre adds to the lattice)
    assert acceleration_of(mask_func((3, width), 0)) < 0.9 * acceleration


def test_equispaced_1d_reaches_the_acceleration_by_default():
    for acceleration in ACCELERATIONS:
        mask_func = create("equispaced_1d", acceleration=acceleration)
        for seed in range(10):
            assert acceleration_of(mask_func((8, 128), seed)) == pytest.approx(acceleration, rel=0.1)


@pytest.mark.parametrize("shape", SHAPES)
def test_equispaced_1d_exact_fraction_reaches_the_acceleration(shape):
    for acceleration in ACCELERATIONS:
        mask_func = create("equispaced_1d", acceleration=acceleration, exact_fraction=True)
        columns = [mask_func(shape, seed)[0].sum() for seed in range(30)]
        assert shape[1] / np.mean(columns) == pytest.approx(acceleration, rel=0.05)
        if shape[1] >= 96:  # below that, one lattice column more or less is over 10 %
            assert shape[1] / min(columns) == pytest.approx(acceleration, rel=0.1)
            assert shape[1] / max(columns) == pytest.approx(acceleration, rel=0.1)


@pytest.mark.parametrize("shape", SHAPES)
def test_uniform_1d_is_deterministic_exact_and_evenly_spaced(shape):
    width = shape[1]
    centre = centre_region("uniform_1d", shape)[0]
    for acceleration in ACCELERATIONS:
        mask_func = create("uniform_1d", acceleration=acceleration)
        columns = mask_func(shape, 0)[0]
        assert np.array_equal(columns, mask_func(shape, 12345)[0])
        assert columns.sum() == round(width / acceleration)
        outside = np.flatnonzero(~centre)
        gaps = np.diff(np.flatnonzero(columns[outside]))
        assert gaps.max() - gaps.min() <= 1


# ------------------------------------------------------------------------------------------- 2D kinds


def ring_fraction(mask: np.ndarray, low: float, high: float) -> float:
    """The sampled fraction of pixels whose normalised distance from DC is in [low, high)."""
    rho = centre_distance(mask.shape)
    return float(mask[(rho >= low) & (rho < high)].mean())


@pytest.mark.parametrize("kind", TWO_D)
def test_2d_density_falls_off_from_the_centre(kind):
    mask = create(kind, acceleration=6)((192, 192), 4)
    rings = [ring_fraction(mask, low, low + 0.25) for low in (0.1, 0.35, 0.6, 0.85)]
    assert rings == sorted(rings, reverse=True) and rings[0] > 2 * rings[-1] > 0


def test_random_2d_samples_exactly_round_hw_over_r_points():
    for shape in SHAPES:
        for acceleration in [2, 3.5, 6]:
            mask = create("random_2d", acceleration=acceleration)(shape, 1)
            assert mask.sum() == round(shape[0] * shape[1] / acceleration)


def test_random_2d_sigma_widens_the_pattern():
    narrow = create("random_2d", acceleration=4, sigma=0.2)((128, 128), 0)
    wide = create("random_2d", acceleration=4, sigma=0.8)((128, 128), 0)
    assert ring_fraction(narrow, 0.7, 1.0) < ring_fraction(wide, 0.7, 1.0) / 2


@pytest.mark.parametrize("golden", [False, True])
@pytest.mark.parametrize("shape", [(128, 128), (95, 96)])
def test_radial_2d_spokes_are_full_diameters_through_dc(shape, golden):
    mask = create("radial_2d", acceleration=4, golden_angle=golden)(shape, 2)
    height, width = shape
    cy, cx = height // 2, width // 2
    half_h, half_w = min(cy, height - 1 - cy), min(cx, width - 1 - cx)
    box = mask[cy - half_h : cy + half_h + 1, cx - half_w : cx + half_w + 1]
    assert np.array_equal(box, box[::-1, ::-1]), "a spoke through DC is point-symmetric"
    # along the border, each spoke leaves at most a couple of pixels: sampled points are sparse there
    assert mask[0].mean() < 0.5 and mask[:, 0].mean() < 0.5


@pytest.mark.parametrize("shape", [(128, 128), (95, 96)])
def test_radial_2d_spoke_count_is_the_one_closest_to_the_target(shape):
    target = round(shape[0] * shape[1] / 4)
    for golden in [False, True]:
        mask_func = create("radial_2d", acceleration=4, golden_angle=golden)
        errors = [int(mask_func(shape, seed).sum()) - target for seed in range(20)]
        assert max(map(abs, errors)) <= max(shape) / 2, "within half a spoke of the target"
    assert min(errors) < 0 < max(errors), "golden-angle draws land on both sides of the target"


def test_radial_2d_uses_more_spokes_for_lower_acceleration():
    def border_hits(acceleration):
        mask = create("radial_2d", acceleration=acceleration)((128, 128), 0)
        return np.count_nonzero(np.diff(mask[0].astype(int)) == 1)

    assert border_hits(8) < border_hits(4) < border_hits(2)


def test_poisson_2d_is_a_poisson_disc_pattern():
    from scipy.spatial import cKDTree

    shape = (128, 128)
    for acceleration in [3, 6, 8]:
        mask = create("poisson_2d", acceleration=acceleration)(shape, 9)
        outer = np.argwhere(mask & (centre_distance(shape) > 0.5))
        nearest = cKDTree(outer).query(outer, k=2)[0][:, 1]
        assert nearest.min() > 1.0, "no two outer samples are neighbours"
        assert nearest.std() / nearest.mean() < 0.3, "spacing is regular (blue noise), unlike random points"
        holes = cKDTree(np.argwhere(mask)).query(np.argwhere(centre_distance(shape) > 0.5))[0]
        assert holes.max() <= 2 * nearest.mean(), "the set is maximal: no large empty regions"


def test_poisson_2d_falloff_spreads_samples_toward_the_centre():
    flat = create("poisson_2d", acceleration=4, falloff=0.5)((128, 128), 0)
    steep = create("poisson_2d", acceleration=4, falloff=6)((128, 128), 0)
    assert ring_fraction(steep, 0.8, 1.0) < ring_fraction(flat, 0.8, 1.0)


# ----------------------------------------------------------------------------------------------- file


def test_mat_file_mask_is_read_as_is_and_ignores_the_seed(tmp_path):
    mask = create("random_2d", acceleration=4)((40, 36), 0)
    path = tmp_path / "mask.mat"
    scipy.io.savemat(path, {"mask": mask.astype(np.float64)})
    mask_func = create("file", path=str(path))
    loaded = mask_func((40, 36), 0)
    assert loaded.dtype == np.bool_ and np.array_equal(loaded, mask)
    assert np.array_equal(mask_func((40, 36), 99), mask)
    loaded[:] = False
    assert np.array_equal(mask_func((40, 36), 1), mask)
    assert pickle.loads(pickle.dumps(mask_func))((40, 36), 0).sum() == mask.sum()


@pytest.mark.parametrize("suffix", [".mat", ".npy"])
def test_1d_file_masks_select_columns(tmp_path, suffix):
    columns = np.zeros(30, dtype=np.uint8)
    columns[::3] = 1
    path = tmp_path / f"columns{suffix}"
    if suffix == ".mat":
        scipy.io.savemat(path, {"mask": columns})  # MATLAB stores it as a (1, 30) row vector
    else:
        np.save(path, columns)
    mask = create("file", path=str(path))((7, 30), 0)
    assert mask.shape == (7, 30) and (mask == columns.astype(bool)).all()


def test_npy_file_mask_and_matching_acceleration(tmp_path):
    mask = np.zeros((20, 20), dtype=bool)
    mask[:, ::4] = True
    path = tmp_path / "mask.npy"
    np.save(path, mask)
    assert np.array_equal(create("file", path=path, acceleration=4)((20, 20), 0), mask)
    with pytest.raises(UserError, match="acceleration is 4"):
        create("file", path=str(path), acceleration=6)
    with pytest.raises(UserError, match="'acceleration'"):
        create("file", path=str(path), acceleration=0.5)


def test_file_mask_of_the_wrong_size_names_the_file_and_both_shapes(tmp_path):
    path = tmp_path / "small.mat"
    scipy.io.savemat(path, {"mask": np.ones((32, 32))})
    mask_func = create("file", path=str(path))
    with pytest.raises(UserError, match="small.mat") as err:
        mask_func((64, 64), 0)
    assert "(32, 32)" in str(err.value) and "(64, 64)" in str(err.value)
    np.save(tmp_path / "cols.npy", np.ones(30))
    with pytest.raises(UserError, match=r"cols.npy.*\(30,\).*\(8, 31\)"):
        create("file", path=str(tmp_path / "cols.npy"))((8, 31), 0)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.mat", None, "not found"),
        ("nokey.mat", {"other": np.ones(3), "us": np.ones(2)}, r"no variable 'mask' \(found: other, us\)"),
        ("corrupt.mat", b"this is not a MATLAB file" * 20, "not a readable .mat"),
        ("corrupt.npy", b"\x93NUMPY garbage", "not a readable .npy"),
        ("cube.npy", np.ones((2, 3, 4)), "got shape \\(2, 3, 4\\)"),
        ("nan.mat", {"mask": np.array([[1.0, np.nan], [0.0, 1.0]])}, "NaN"),
        ("zeros.npy", np.zeros((4, 4)), "samples no k-space point"),
        ("text.npy", np.array([["a", "b"]]), "numeric"),
        ("mask.txt", b"1 0 1", "expected a .mat or .npy"),
    ],
)
def test_bad_mask_files_are_user_errors_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        scipy.io.savemat(path, content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(UserError, match=message) as err:
        create("file", path=str(path))
    assert name in str(err.value)


def test_file_kind_needs_a_path_and_takes_no_pattern_parameters(tmp_path):
    with pytest.raises(UserError, match="'path' is required"):
        create("file")
    np.save(tmp_path / "m.npy", np.ones((4, 4)))
    with pytest.raises(UserError, match="center_fraction"):
        create("file", path=str(tmp_path / "m.npy"), center_fraction=0.1)


def test_file_is_read_once(tmp_path):
    path = tmp_path / "once.npy"
    np.save(path, np.eye(6))
    mask_func = create("file", path=str(path))
    path.unlink()
    assert np.array_equal(mask_func((6, 6), 0), np.eye(6, dtype=bool))


def test_matlab_v73_files_are_read_with_h5py(tmp_path):
    h5py = pytest.importorskip("h5py")
    mask = np.zeros((6, 5))
    mask[:, 1] = 1
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["mask"] = mask.T  # MATLAB writes column-major arrays, which h5py sees transposed
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + b"\0" * 8 + b"\x00\x02IM"
    with open(path, "r+b") as handle:
        handle.write(header)
    assert np.array_equal(create("file", path=str(path))((6, 5), 0), mask.astype(bool))
