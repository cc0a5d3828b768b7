"""Property-based: any broken config file or data file is one error line with exit code 2, and an
existing run directory is left exactly as it was."""

import copy
import hashlib

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import train
from assembly.config import validate_config
from tests.conftest import tiny_config_dict
from utils.errors import UserError

BAD_VALUES = st.sampled_from([-1, 0, -0.5, 1e30, "abc", "", [], {}, None, True, [1, 2], {"x": 1}])


def leaf_paths(data, prefix=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaf_paths(value, (*prefix, key))
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        for i, value in enumerate(data):
            yield from leaf_paths(value, (*prefix, i))
    if prefix:
        yield prefix


def get_parent(data, path):
    for key in path[:-1]:
        data = data[key]
    return data


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A finished tiny run whose files must survive every failing invocation byte for byte."""
    root = tmp_path_factory.mktemp("bad-input")
    base = tiny_config_dict(root, rounds=1)
    path = root / "base.yaml"
    path.write_text(yaml.safe_dump(base))
    assert train.main(["--config", str(path)]) == 0
    run_dir = root / "runs" / "tiny"
    return root, base, run_dir, snapshot(root / "runs")


def snapshot(directory):
    return {
        p.relative_to(directory): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def check_one_line_failure(capsys, argv, must_name, runs_before, runs_dir):
    capsys.readouterr()
    code = train.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    assert must_name in err, (must_name, err)
    assert snapshot(runs_dir) == runs_before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_broken_config_files(workspace, capsys, data):
    root, base, _, before = workspace
    config = copy.deepcopy(base)
    paths = sorted(leaf_paths(config), key=str)
    path = data.draw(st.sampled_from(paths), label="path")
    action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
    parent = get_parent(config, path)
    named = ".".join(map(str, path[:-1])) or str(path[0])
    if action == "replace":
        parent[path[-1]] = data.draw(BAD_VALUES, label="value")
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent[path[-1]], dict):
        parent[path[-1]]["unexpected_key"] = 1
        named = ".".join(map(str, (*path, "unexpected_key")))
    else:
        parent["unexpected_key"] = 1
        named = ".".join(map(str, (*path[:-1], "unexpected_key")))
    try:
        validate_config(copy.deepcopy(config))
        assume(False)  # the mutation happened to be valid (e.g. a defaulted key deleted)
    except UserError:
        pass
    file = root / "mutated.yaml"
    file.write_text(yaml.safe_dump(config))
    check_one_line_failure(capsys, ["--config", str(file)], named, before, root / "runs")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=400), garbage=st.binary(max_size=64))
def test_unreadable_yaml(workspace, capsys, cut, garbage):
    root, base, _, before = workspace
    text = yaml.safe_dump(base).encode()[:cut] + garbage + b"\n  - [\x00"
    file = root / "broken.yaml"
    file.write_bytes(text)
    check_one_line_failure(capsys, ["--config", str(file)], "broken.yaml", before, root / "runs")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["truncated", "garbage", "wrong_shape", "nan", "empty"]),
    suffix=st.sampled_from([".npy", ".mat"]),
    site=st.integers(min_value=0, max_value=1),
)
def test_corrupted_mask_files(workspace, capsys, kind, suffix, site):
    from scipy.io import savemat

    root, base, _, before = workspace
    file = root / f"mask-{kind}{suffix}"
    good = np.zeros((32, 32), dtype=np.float32)
    good[:, ::4] = 1
    array = {"wrong_shape": np.ones((20, 24), np.float32), "nan": np.full((32, 32), np.nan, np.float32)}.get(
        kind, good
    )
    if suffix == ".npy":
        np.save(file, array)
    else:
        savemat(file, {"mask": array})
    raw = file.read_bytes()
    if kind == "truncated":
        file.write_bytes(raw[: len(raw) // 2])
    elif kind == "garbage":
        file.write_bytes(b"\x93NUMPY garbage" + bytes(range(50)))
    elif kind == "empty":
        file.write_bytes(b"")
    config = copy.deepcopy(base)
    config["name"] = "never-created"
    config["sites"][site]["mask"] = {"kind": "file", "path": str(file)}
    cfg_file = root / "mask.yaml"
    cfg_file.write_text(yaml.safe_dump(config))
    check_one_line_failure(capsys, ["--config", str(cfg_file)], file.name, before, root / "runs")
