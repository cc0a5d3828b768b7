"""Fuzzing the commands' entry points in this process: hostile arguments, overrides, environment
variables, special files, and damaged run and results folders go to ``train.py``, ``train_multi_gpu.py``,
``evaluate.py``, ``compare.py`` and ``latent.py``'s ``main``. Every case must end in exit 0 or exit 2
with one ``error:`` line on stderr, never a traceback or an internal error, and within a time bound.

Training itself is replaced by a stub once everything before it has run (config, folders, data, the
resumed checkpoint), and so are the process launch of ``train_multi_gpu.py`` and the test of
``evaluate.py``, so that a case takes milliseconds to a second. The default run tries about 200 cases;
``FUZZ_SLOW=1`` multiplies every test's examples by 60 (``FUZZ_SLOW=1 python -m pytest -q -n0
tests/commands/test_fuzz_commands.py``; the totals are printed at the end); ``FUZZ_SCALE=N`` multiplies
them by N.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import compare
import evaluate
import latent
import train
import train_multi_gpu
from tests.conftest import tiny_config_dict

pytestmark = pytest.mark.fuzz
SCALE = int(os.environ.get("FUZZ_SCALE") or (60 if os.environ.get("FUZZ_SLOW") else 1))  # x cases
CASE_SECONDS = 60  # no case may run longer: a hang fails the test
TOTALS: Counter = Counter()
CASE_FOLDER: list[Path] = []  # the working directory of every case


def fuzz(examples: int):
    """``examples`` cases (x60 in the slow mode); no explain phase, whose tracing slows a case tenfold."""
    return settings(
        max_examples=examples * SCALE, deadline=None, database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large],
    )  # fmt: skip


class Launched(BaseException):
    """train_multi_gpu.py got as far as starting its processes (stubbed): a valid request."""


class Trained(BaseException):
    """compare.py got as far as training a run (stubbed): a valid request."""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished tiny run, a study folder and special files, built once; the stubs installed."""
    root = tmp_path_factory.mktemp("fuzz-commands")
    config = tiny_config_dict(root, rounds=1)
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    assert train.main(["--config", str(root / "tiny.yaml")]) == 0
    specials = root / "special"
    specials.mkdir()
    os.mkfifo(specials / "fifo")
    (specials / "devzero").symlink_to("/dev/zero")
    (specials / "loop").symlink_to("loop")
    (specials / "folder").mkdir()
    (specials / "empty").write_text("")
    (specials / "binary").write_bytes(bytes(range(256)) * 64)
    (specials / "broken").symlink_to(root / "nowhere")
    study = root / "study"
    (study / "runs").mkdir(parents=True)
    (study / "manifest.json").write_text(json.dumps(MANIFEST))
    (study / "runs" / "fedavg-s0.json").write_text(json.dumps(RUN_RECORD))
    run = root / "runs" / "tiny"
    return {"root": root, "config": config, "run": run, "specials": specials, "study": study}


@pytest.fixture(autouse=True)
def stubs(monkeypatch, tmp_path):
    """Training, the multi-process launch, the evaluation and a study's training return at once."""
    import lightning.fabric

    from fl.loop import RunLoop

    monkeypatch.setattr(RunLoop, "run", lambda self: {})

    class Fabric:
        def __init__(self, *args, **kwargs):
            pass

        def launch(self):
            raise Launched

    monkeypatch.setattr(lightning.fabric, "Fabric", Fabric)
    monkeypatch.setattr(evaluate, "evaluate", lambda *args, **kwargs: None)

    def trained(*args, **kwargs):
        raise Trained

    monkeypatch.setattr("study.runner._train", trained)
    monkeypatch.setattr("study.runner._train_in_parallel", trained)
    # A relative data.cache_dir is the repository's: in a case, the case's folder stands for it
    monkeypatch.setattr("assembly.build.in_repository", lambda path: tmp_path / Path(path).expanduser())
    CASE_FOLDER[:] = [tmp_path]


VOLUME = {"model": {"psnr": 30.0, "ssim": 0.9, "nmse": 0.01}, "zero_filled": {"psnr": 20.0, "ssim": 0.5,
                                                                              "nmse": 0.1}}  # fmt: skip
RUN_RECORD = {"overrides": [], "sites": {"a": {"best_round": 1, "volumes": {"v1": VOLUME}}},
              "val_psnr": {"a": [1.0]}, "communication": {"mean": {"sent_per_round": 1.0,
              "received_per_round": 2.0}}, "timing": {"seconds_per_round": 1.0}}  # fmt: skip
MANIFEST = {"command": "x", "config": "c", "rounds": 1, "local_epochs": 1, "sites": ["a"], "seeds": [0],
            "rows": [{"label": "FedAvg", "families": ["comparison"], "algorithm": "fedavg",
                      "runs": {"0": "fedavg-s0"}}]}  # fmt: skip


def _expire(signum, frame):
    raise AssertionError(f"a case ran longer than {CASE_SECONDS} s")


def outcome(capsys, main, argv, env=None, monkeypatch=None) -> int:
    """Run ``main(argv)`` (with ``env`` set), check the boundary's promise, return the exit status."""
    capsys.readouterr()
    monkeypatch.chdir(CASE_FOLDER[0])  # relative paths a case names stay in the test's folder
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    previous = signal.signal(signal.SIGALRM, _expire)
    signal.alarm(CASE_SECONDS)
    start = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    except (Launched, Trained):
        code = 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        for name in env or {}:
            monkeypatch.delenv(name, raising=False)
    took = time.perf_counter() - start
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err[-3000:])
    assert "internal error" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    TOTALS[(main.__module__, code)] += 1
    TOTALS["seconds"] += took
    return code


# -- hostile text -------------------------------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(-(2**80), 2**80).map(str),
    st.sampled_from(["1" * 5000, "9" * 4301, "-0", "1e999", "nan", "inf", "0x10", " 7 ", "", "٣", "1_000",
                     "2**70", "1.5", "+3", "00000000000000000000002", "-1", "4096", "4097", "1e-400"]),
)  # fmt: skip


def _contained(text: str) -> bool:
    """A generated path that stays in the test's folder (the working directory during a case)."""
    return not text.startswith(("/", "~", "\\")) and ".." not in text


TEXT = st.one_of(
    st.text(max_size=30).filter(_contained),
    st.sampled_from(["", "~nouser/x", "a" * 300, "a/" * 2100, "\x1b[31mred", "line\nbreak", "/dev/zero",
                     "/proc/self/mem", "x" * 5000, "é/ü", "\udcff", "/dev/null/x"]),
)  # fmt: skip
YAML_VALUES = st.one_of(
    NUMBERS,
    st.sampled_from(["[" * 2000 + "]" * 2000, "&a [*a]", "!!set {a}", "!!binary aGk=",
                     "!!python/object:os.system", "${oops", "${paths.x}", "{a: 1, a: 2}", "null", "true",
                     "2024-01-01", ".nan", "-.inf",
                     "1e308", "[1, 2, 3]", "{}", "'" + "z" * 3000 + "'"]),
    st.text(max_size=20).filter(_contained),
)  # fmt: skip
# Keys whose values make work in proportion (subjects to simulate) are left out: 9,682 subjects take
# minutes to simulate, as asked, which is no hang.
KEYS = st.sampled_from(
    ["seed", "name", "output_dir", "fl.rounds", "fl.algorithm", "optim.lr", "model.chans",
     "sites.0.batch_size", "sites.0.mask.acceleration", "sites.0.source.size", "sites.0.source.kind",
     "sites.1.name", "sites.9.name",
     "trainer.devices", "trainer.num_workers", "data.cache_dir", "fl.fedmri.beta", "sites.-1.name", "sites",
     "paths.x", "fl", "a..b", ".", "sites.0.source.slices_per_subject", "trainer.precision"]
)  # fmt: skip
ENV = st.dictionaries(
    st.sampled_from(["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "SLURM_PROCID", "NODE_RANK"]),
    NUMBERS.filter(lambda t: "\0" not in t),
    max_size=2,
)


def overrides(draw) -> list[str]:
    return [f"{draw(KEYS)}={draw(YAML_VALUES)}" for _ in range(draw(st.integers(0, 2)))]


def a_path(draw, world, *extra: Path) -> str:
    specials = sorted(str(p) for p in world["specials"].iterdir())
    return draw(st.one_of(st.sampled_from([*specials, *map(str, extra)]), TEXT))


# -- damaged files -------------------------------------------------------------------------------------
def damage(draw, path: Path) -> None:
    """Flip, truncate, append to or replace the file at ``path``, or put a special file in its place."""
    kinds = ["flip", "truncate", "append", "empty", "fifo", "folder", "devzero", "huge line"]
    kind = draw(st.sampled_from(kinds))
    data = path.read_bytes() if path.is_file() else b""
    path.unlink(missing_ok=True) if not path.is_dir() else shutil.rmtree(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "huge line":
        path.write_bytes(data + b"x" * 300_000 + b"\n")
    elif kind == "empty" or not data:
        path.write_bytes(b"")
    elif kind == "truncate":
        path.write_bytes(data[: draw(st.integers(0, len(data) - 1))])
    elif kind == "append":
        path.write_bytes(data + draw(st.binary(min_size=1, max_size=64)))
    else:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        path.write_bytes(bytes(out))


def tamper(draw, path: Path) -> None:
    """Replace one entry of the checkpoint at ``path`` by a hostile value and save it with a valid checksum
    (what a bit flip cannot reach: the structure the checks must hold)."""
    from utils.checkpoint import save_checkpoint

    ckpt = torch.load(path, weights_only=True)
    ckpt.pop("checksum", None)
    paths, stack = [], [((), ckpt)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict) and len(where) < 5:
            for key, value in node.items():
                paths.append((*where, key))
                stack.append(((*where, key), value))
    where = draw(st.sampled_from(sorted(paths, key=str)))
    parent = ckpt
    for part in where[:-1]:
        parent = parent[part]
    value = draw(st.one_of(
        st.sampled_from([None, True, -1, 0, 10**30, math.nan, "x", [], {}, [1, "a"], {"a": 1}]),
        st.builds(lambda n: torch.zeros(n), st.integers(0, 3)),
        st.builds(lambda: torch.full((2, 2), math.nan)),
    ))  # fmt: skip
    if draw(st.booleans()):
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    save_checkpoint(ckpt, path)


def run_copy(world, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / "tiny"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(world["run"], target, symlinks=True)
    saved = yaml.safe_load((target / "config.yaml").read_text())
    saved["output_dir"] = str(tmp_path / "runs")
    (target / "config.yaml").write_text(yaml.safe_dump(saved))
    return target


# -- the commands --------------------------------------------------------------------------------------
@fuzz(40)
@given(data=st.data())
def test_train_arguments_and_overrides(world, tmp_path, capsys, monkeypatch, data):
    draw = data.draw
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**world["config"], "output_dir": str(tmp_path / "runs")}))
    argv = []
    if draw(st.booleans()):
        argv += ["--config", draw(st.one_of(st.just(str(config)), st.builds(lambda: a_path(draw, world))))]
    else:
        argv += ["--config", str(config)]
    argv += overrides(draw)
    argv += draw(st.lists(st.sampled_from(["--overwrite", "--force", "--nope"]), max_size=2))
    outcome(capsys, train.main, argv, draw(ENV) if draw(st.integers(0, 4)) == 0 else {}, monkeypatch)


@fuzz(40)
@given(data=st.data())
def test_train_resume_of_a_damaged_run(world, tmp_path, capsys, monkeypatch, data):
    draw = data.draw
    run_dir = run_copy(world, tmp_path)
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and "tb" not in p.parts)
    for path in draw(st.lists(st.sampled_from(files), min_size=1, max_size=2, unique=True)):
        if path.suffix == ".ckpt" and draw(st.booleans()):
            tamper(draw, path)
        else:
            damage(draw, path)
    argv = ["--resume", str(run_dir), *draw(st.sampled_from([[], ["fl.rounds=2", "--force"]]))]
    outcome(capsys, train.main, argv, {}, monkeypatch)


@fuzz(25)
@given(data=st.data())
def test_train_multi_gpu_devices_and_launcher_variables(world, tmp_path, capsys, monkeypatch, data):
    draw = data.draw
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**world["config"], "output_dir": str(tmp_path / "runs")}))
    argv = ["--config", str(config), *overrides(draw)]
    if draw(st.booleans()):
        argv += ["--devices", draw(NUMBERS)]
    outcome(capsys, train_multi_gpu.main, argv, draw(ENV), monkeypatch)


@fuzz(40)
@given(data=st.data())
def test_evaluate_of_a_damaged_run_or_checkpoint(world, tmp_path, capsys, monkeypatch, data):
    draw = data.draw
    run_dir = run_copy(world, tmp_path)
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    for path in draw(st.lists(st.sampled_from([*ckpts, run_dir / "config.yaml"]), max_size=2, unique=True)):
        if path.suffix == ".ckpt" and draw(st.booleans()):
            tamper(draw, path)
        else:
            damage(draw, path)
    source = draw(st.sampled_from(["--run", "--ckpt"]))
    target = run_dir if source == "--run" else draw(st.sampled_from(ckpts))
    argv = [source, draw(st.one_of(st.just(str(target)), st.builds(lambda: a_path(draw, world))))]
    if draw(st.booleans()):
        argv += ["--out", a_path(draw, world, tmp_path / "out")]
    argv += overrides(draw)
    outcome(capsys, evaluate.main, argv, {}, monkeypatch)


JSON_VALUES = st.one_of(
    st.sampled_from([None, True, -1, 0, -(10**30), 10**400, math.nan, math.inf, -math.inf, 1e308, "",
                     "x" * 300, [], {}, [1, "a"], {"a": 1}, "../../x", "a/b", ".hidden"]),
    st.floats(), st.integers(), st.text(max_size=10),
)  # fmt: skip


def mutate_json(draw, data):
    """Replace or delete one entry anywhere in ``data``."""
    data = copy.deepcopy(data)
    places, stack = [], [((), data)]
    while stack:
        where, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            places.append((*where, key))
            stack.append(((*where, key), value))
    where = draw(st.sampled_from(places))
    parent = data
    for part in where[:-1]:
        parent = parent[part]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[where[-1]]
    else:
        parent[where[-1]] = draw(JSON_VALUES)
    return data


@fuzz(40)
@given(data=st.data())
def test_compare_report_of_a_damaged_results_folder(world, tmp_path, capsys, monkeypatch, data):
    draw = data.draw
    folder = tmp_path / "study"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(world["study"], folder)
    which = draw(st.sampled_from(["manifest", "run", "both", "file", "none"]))
    if which in ("manifest", "both"):
        (folder / "manifest.json").write_text(json.dumps(mutate_json(draw, MANIFEST)))
    if which in ("run", "both"):
        (folder / "runs" / "fedavg-s0.json").write_text(json.dumps(mutate_json(draw, RUN_RECORD)))
    if which == "file":
        damage(draw, draw(st.sampled_from([folder / "manifest.json", folder / "runs" / "fedavg-s0.json",
                                           folder / "comparison.md", folder / "figures"])))  # fmt: skip
    target = draw(st.one_of(st.just(str(folder)), st.builds(lambda: a_path(draw, world))))
    outcome(capsys, compare.main, ["--report", target], {}, monkeypatch)


@fuzz(15)
@given(data=st.data())
def test_compare_study_options(world, tmp_path, capsys, monkeypatch, data):
    draw = data.draw
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**world["config"], "output_dir": str(tmp_path / "runs")}))
    argv = ["--config", draw(st.one_of(st.just(str(config)), st.builds(lambda: a_path(draw, world))))]
    argv += ["--algorithms", draw(st.sampled_from(["fedavg", "all", "", "nope", "fedavg,fedavg"]))]
    for option, values in [
        ("--seeds", NUMBERS),
        ("--jobs", NUMBERS),
        ("--local-epochs", NUMBERS),
        ("--betas", NUMBERS),
        ("--name", TEXT),
        ("--results", TEXT),
        ("--first", TEXT),
    ]:
        if draw(st.integers(0, 3)) == 0:
            argv += [option, draw(values)]
    argv += overrides(draw)
    outcome(capsys, compare.main, argv, {}, monkeypatch)


@fuzz(15)
@given(data=st.data())
def test_latent_arguments(world, tmp_path, capsys, monkeypatch, data):
    draw = data.draw
    run_dir = run_copy(world, tmp_path)
    for path in draw(st.lists(st.sampled_from(sorted((run_dir / "checkpoints").glob("best_*.ckpt"))),
                              max_size=1)):  # fmt: skip
        damage(draw, path)
    argv = [draw(st.one_of(st.just(str(run_dir)), st.builds(lambda: a_path(draw, world))))]
    for option in ("--seed", "--max-slices-per-site"):
        if draw(st.booleans()):
            argv += [option, draw(NUMBERS)]
    if draw(st.booleans()):
        argv += ["--out", a_path(draw, world, tmp_path / "tsne.png")]
    outcome(capsys, latent.main, argv, {}, monkeypatch)


def test_zz_totals(capsys):
    """The cases tried by this file (printed with -s; FUZZ_SLOW=1 gives the slow mode's totals)."""
    cases = sum(v for k, v in TOTALS.items() if k != "seconds")
    with capsys.disabled():
        by_code = Counter()
        for key, value in TOTALS.items():
            if key != "seconds":
                by_code[key[1]] += value
        print(f"\nfuzzed commands: {cases} cases, exit codes {dict(by_code)}, "
              f"{TOTALS['seconds']:.0f} s in the commands, 0 tracebacks, 0 hangs")  # fmt: skip
