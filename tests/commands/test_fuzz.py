"""Fuzzing the boundaries a user touches: every case ends in a valid result or the project's one-line
:class:`UserError`, never another exception.

Generated configs (types, ranges, YAML features, paths), corrupted files in every format the readers
take, and tampered checkpoints. The default run tries a few hundred cases; ``FUZZ_SLOW=1`` multiplies
every test's examples by 20 (``FUZZ_SLOW=1 python -m pytest -q -m fuzz tests/commands/test_fuzz.py``).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assembly.config import load_config, validate_config
from data.sources.readers import CorruptFile, read_h5_stack, read_nifti, read_npy
from fl.loop import RunLoop
from fl.reporter import Reporter
from fl.site import check_optimizer_state
from tests.conftest import tiny_config_dict
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UserError
from utils.lock import lock_run, unlock_run

pytestmark = pytest.mark.fuzz
SCALE = 20 if os.environ.get("FUZZ_SLOW") else 1


def fuzz(examples: int):
    """Hypothesis settings: ``examples`` cases (x20 in the slow mode), no deadline, shared fixtures."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )


# -- configs ---------------------------------------------------------------------------------------
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["2024-01-01", "!!set {a, b}", "${oops", "~nouser/x", "a" * 300, "/dev/null", "&a [*a]"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _keys(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return [prefix]
    keys = [prefix] if prefix else []
    for key, value in items:
        keys += _keys(value, f"{prefix}.{key}" if prefix else str(key))
    return keys


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    return tiny_config_dict(tmp_path_factory.mktemp("fuzz"))


def _valid_or_user_error(call) -> Any:
    try:
        return call()
    except UserError as err:
        assert "\n" not in str(err) and str(err), repr(err)
        return None


@fuzz(150)
@given(data=st.data())
def test_overrides_give_a_config_or_one_line(base, data) -> None:
    """A dotted override of any existing key (or a new one) with any YAML value."""
    key = data.draw(st.sampled_from(_keys(base) + ["fl.nope", "sites.9.name", "trainer"]))
    value = data.draw(VALUES)
    text = data.draw(st.sampled_from(["yaml", "raw"]))
    rendered = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    if text == "raw" and isinstance(value, str):
        rendered = value
    if "\0" in rendered:
        rendered = rendered.replace("\0", "")
    config = _valid_or_user_error(lambda: load_config(overrides=[f"{key}={rendered}"], base=base))
    if config is not None:
        assert config.seed >= 0 and config.optim.lr > 0


@fuzz(100)
@given(text=st.text(max_size=300))
def test_yaml_text_gives_a_config_or_one_line(tmp_path, base, text) -> None:
    """Any text as a config file, and the tiny config with random text spliced in."""
    path = tmp_path / "config.yaml"
    for content in (text, yaml.safe_dump(base) + text):
        try:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        except UnicodeEncodeError:
            continue
        _valid_or_user_error(lambda: load_config(path))


@pytest.mark.parametrize(
    "text",
    [
        "name: 2024-01-01",
        "name: !!set {a, b}",
        "null: 3",
        "name: '${foo'",
        "name: " + "[" * 1200 + "]" * 1200,
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdef", "bcdefg")),
        "name: !!binary aGVsbG8=",
        "seed: true",
        'output_dir: "a\\0b"',
    ],
)
def test_yaml_features_the_config_cannot_hold(tmp_path, base, text) -> None:
    """Dates stay strings; sets, binary, null keys, unclosed interpolations, deep nesting, alias bombs and
    NUL characters are one line, fast."""
    data = {
        **base,
        **(yaml.safe_load(text) if "!!" not in text and "&" not in text and "[[" not in text else {}),
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in base.items() if k != "name"}) + text + "\n")
    start = time.perf_counter()
    config = _valid_or_user_error(lambda: load_config(path))
    assert time.perf_counter() - start < 5
    if text == "name: 2024-01-01":
        assert config is not None and config.name == "2024-01-01"
    elif text not in ("name: " + "[" * 1200 + "]" * 1200,):
        assert config is None, data


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lr=.inf", "optim.lr"),
        ("optim.lr=1e300", "optim.lr"),
        ("optim.weight_decay=.inf", "optim.weight_decay"),
        ("fl.fedmri.lam=.inf", "fl.fedmri.lam"),
        ("model.kspace_loss_weight=1e400", "model.kspace_loss_weight"),
        ("seed=true", "seed"),
        ("sites.0.batch_size=1000000000000000000000000000000", "sites.0.batch_size"),
        ("sites.0.name=" + "a" * 300, "sites.0.name"),
        ("output_dir=~nouser/x", "output_dir"),
        ("output_dir=" + "b" * 256, "output_dir"),
    ],
)
def test_numbers_names_and_paths_are_bounded(base, override, key) -> None:
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_config(overrides=[override], base=base)


def test_a_config_with_a_nul_character_is_one_line(base) -> None:
    with pytest.raises(UserError, match="NUL"):
        validate_config({**base, "output_dir": "runs\0x"})


# -- corrupted files -------------------------------------------------------------------------------
def _mutations(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "zero", "append", "empty"]))
    if kind == "empty" or not data:
        return b""
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "append":
        return data + draw(st.binary(min_size=1, max_size=64))
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(out) - 1))
        out[i] = draw(st.integers(0, 255)) if kind == "flip" else 0
    return bytes(out)


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> dict[str, bytes]:
    import h5py
    import nibabel as nib

    folder = tmp_path_factory.mktemp("files")
    volume = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)
    np.save(folder / "v.npy", volume)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / "v.nii.gz")
    nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / "v.nii")
    with h5py.File(folder / "v.h5", "w") as handle:
        handle["image"] = volume
    return {name: (folder / name).read_bytes() for name in ("v.npy", "v.nii.gz", "v.nii", "v.h5")}


READERS = {
    "v.npy": read_npy,
    "v.nii.gz": read_nifti,
    "v.nii": read_nifti,
    "v.h5": lambda path: read_h5_stack(path, "image"),
}


@fuzz(60)
@given(data=st.data())
def test_corrupted_image_files_give_an_array_or_one_line(tmp_path, valid_files, data) -> None:
    name = data.draw(st.sampled_from(sorted(READERS)))
    path = tmp_path / name
    path.write_bytes(_mutations(valid_files[name], data.draw))
    try:
        array = READERS[name](path)
    except (CorruptFile, UserError) as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert array.ndim == 3


# -- checkpoints -----------------------------------------------------------------------------------
class _Rounds:
    """A one-site stand-in for a federation: a real model and RMSprop state, checked like a Site."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(2, 1, 1))
        self.optimizer = torch.optim.RMSprop(self.model.parameters(), lr=1e-3)
        self.model(torch.ones(1, 1, 4, 4)).sum().backward()
        self.optimizer.step()
        self.completed = 0

    def state_dict(self) -> dict[str, Any]:
        return {"sites": {"a": {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        site = state["sites"]["a"]
        check_optimizer_state(self.optimizer, site["optimizer"])
        self.model.load_state_dict(site["model"])
        self.optimizer.load_state_dict(site["optimizer"])


def _loop(run_dir: Path, config: dict) -> RunLoop:
    reporter = Reporter(
        run_dir, name="x", algorithm="fedmri", rounds=2, config=config, sites=["a"], writer=False,
        tensorboard=False, log=lambda _: None,
    )  # fmt: skip
    return RunLoop(
        _Rounds(), reporter, config=config, total=2, lr=lambda r: 1e-3, headline="", log=lambda _: None
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, base) -> tuple[Path, dict, dict]:
    run_dir = tmp_path_factory.mktemp("ckpt")
    config = validate_config(base).to_dict()
    loop = _loop(run_dir, config)
    loop.completed = 1
    loop.reporter.history = {"a": [10.0]}
    state = loop.state_dict()
    return run_dir, config, state


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node[:3]):
            out += _paths(value, (*prefix, i))
    return out


REPLACEMENTS = st.one_of(
    SCALARS,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.builds(lambda shape: torch.zeros(shape), st.lists(st.integers(0, 3), max_size=3)),
    st.builds(lambda n: torch.zeros(n, dtype=torch.uint8), st.integers(0, 10)),
)


@fuzz(150)
@given(data=st.data())
def test_tampered_checkpoints_load_or_give_one_line(checkpoint, data) -> None:
    """Any key removed or replaced by any value, re-saved with a valid checksum: loads, or one line."""
    run_dir, config, state = checkpoint
    tampered = copy.deepcopy(state)
    where = data.draw(st.sampled_from(_paths(tampered)))
    parent = tampered
    for part in where[:-1]:
        parent = parent[part]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent[where[-1]] = data.draw(REPLACEMENTS)
    path = run_dir / "tampered.ckpt"
    save_checkpoint(tampered, path)
    _valid_or_user_error(lambda: _loop(run_dir, config).load(path))


@pytest.mark.parametrize(
    "stated", [torch.zeros(0), torch.zeros(2), torch.tensor(2), "2", 2.0, True, None, 1], ids=repr
)
def test_a_checkpoint_format_that_is_not_this_versions_int_is_one_line(checkpoint, stated) -> None:
    from utils.errors import UserError

    run_dir, config, state = checkpoint
    tampered = copy.deepcopy(state)
    tampered["format"] = stated
    path = run_dir / "format.ckpt"
    save_checkpoint(tampered, path)
    with pytest.raises(UserError, match="unsupported format") as info:
        _loop(run_dir, config).load(path)
    assert "\n" not in str(info.value)


@fuzz(60)
@given(data=st.data())
def test_corrupted_checkpoint_bytes_load_or_give_one_line(checkpoint, data) -> None:
    run_dir, config, state = checkpoint
    path = run_dir / "corrupt.ckpt"
    save_checkpoint(state, path)
    path.write_bytes(_mutations(path.read_bytes(), data.draw))
    _valid_or_user_error(lambda: _loop(run_dir, config).load(path))


def test_checkpoint_of_another_config_is_refused_naming_the_keys(checkpoint) -> None:
    run_dir, config, state = checkpoint
    path = run_dir / "other.ckpt"
    save_checkpoint(state, path)
    other = copy.deepcopy(config)
    other["optim"]["name"] = "adam"
    other["model"]["chans"] = 8
    with pytest.raises(UserError, match=r"belongs to another config.*model\.chans.*optim\.name"):
        _loop(run_dir, other).load(path)
    _loop(run_dir, config).load(path)  # its own config loads


def test_flipped_weight_bytes_fail_the_checksum(checkpoint) -> None:
    run_dir, config, state = checkpoint
    tampered = copy.deepcopy(state)
    path = run_dir / "flipped.ckpt"
    save_checkpoint(tampered, path)
    saved = torch.load(path, weights_only=True)
    saved["sites"]["a"]["model"]["0.weight"][0, 0, 0, 0] += 1.0
    torch.save(saved, path)  # the old checksum, new weights
    with pytest.raises(UserError, match="checksum"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_checkpoint(path)


# -- the run lock ----------------------------------------------------------------------------------
def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path) -> None:
    run_dir = tmp_path / "runs" / "r"
    script = f"from utils.lock import lock_run; lock_run({str(run_dir)!r}); print('held', flush=True); "
    holder = subprocess.Popen(
        [sys.executable, "-c", script + "import time; time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"PID {holder.pid}\b"):
            lock_run(run_dir)
    finally:
        holder.kill()  # a killed holder leaves no stale lock
        holder.wait()
    assert lock_run(run_dir) is True
    assert lock_run(run_dir) is False  # held by this process already
    unlock_run(run_dir)
