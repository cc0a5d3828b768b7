"""``--options`` lists every config key the schema accepts, with its type, default and description, and
the commands find their default config (and cache) from any working directory."""

import os
import subprocess
import sys

import pytest

from assembly.build import Builder
from assembly.config import Config, load_config
from assembly.keys import config_keys, options_text
from fl.algorithms import ALGORITHMS
from tests.conftest import ROOT


def schema_paths() -> set[str]:
    """Every key path of pydantic's own JSON schema of the config (N for a list index, NAME for a name
    you choose), each algorithm's section included: a walk independent of assembly.keys."""
    schema = Config.model_json_schema()
    defs = schema.get("$defs", {})
    paths: set[str] = set()

    def walk(node: dict, prefix: str) -> None:
        if "$ref" in node:
            walk(defs[node["$ref"].rsplit("/", 1)[1]], prefix)
            return
        alternatives = node.get("anyOf") or node.get("oneOf")
        if alternatives and any("$ref" in a or "properties" in a for a in alternatives):
            for alternative in alternatives:
                if alternative.get("type") != "null":
                    walk(alternative, prefix)
            return
        if "properties" in node:
            for name, child in node["properties"].items():
                walk(child, f"{prefix}{name}.")
            return
        if node.get("type") == "array" and "$ref" in node.get("items", {}):
            walk(node["items"], f"{prefix}N.")
            return
        if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
            paths.add(f"{prefix}NAME")
            return
        paths.add(prefix.rstrip("."))

    walk(schema, "")
    for name, algorithm in ALGORITHMS.items():
        if algorithm.Options is not None:
            for key in algorithm.Options.model_json_schema()["properties"]:
                paths.add(f"fl.{name}.{key}")
    return paths


def listed_paths(text: str) -> set[str]:
    return {line.split()[0] for line in text.splitlines()[3:] if line and not line.startswith(" ")}


def test_options_lists_every_key_of_the_schema_and_nothing_else():
    expected = schema_paths()
    assert {"seed", "sites.N.source.size", "sites.N.mask.falloff", "fl.fedmri.beta", "paths.NAME"} <= expected
    assert listed_paths(options_text()) == expected


def test_every_key_says_its_type_default_and_meaning():
    keys = config_keys()
    assert len(keys) > 150
    for key in keys:
        assert key.type and key.default, key
        assert key.description, f"{key.path} ({key.kind or 'any kind'}): no description in the schema"
    text = options_text()
    assert "fl.rounds  [int >= 1; default 50]" in text
    assert "trainer.num_workers  [int or auto; default 0]" in text
    assert "sites.N.mask.sigma (kind: random_2d)  [float > 0.0; default 0.4]" in text


def run(args, cwd, columns=110):
    # The listing wraps at the terminal's width (COLUMNS where set, at most 110): pin it
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": str(columns)},
    )  # fmt: skip


@pytest.mark.parametrize("command", ["train.py", "train_multi_gpu.py", "evaluate.py", "compare.py"])
def test_each_commands_help_points_to_the_list(command, tmp_path):
    helped = run([str(ROOT / command), "--help"], tmp_path)
    assert helped.returncode == 0 and "--options" in helped.stdout


@pytest.mark.parametrize("columns", [110, 72])
def test_the_list_prints_from_another_directory(tmp_path, columns):
    listed = run([str(ROOT / "train.py"), "--options"], tmp_path, columns)
    assert listed.returncode == 0 and listed.stdout == options_text(columns)


def test_train_py_from_another_directory_reads_the_repositorys_default_config(tmp_path):
    # trainer.devices=2 is refused after the config is read and before any data is made
    done = run([str(ROOT / "train.py"), "trainer.devices=2"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: trainer.devices: 2 devices would run DDP"), done.stderr
    assert not (tmp_path / ".cache").exists()


def test_the_default_cache_is_the_repositorys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config("configs/default.yaml")
    assert config.data.cache_dir == ".cache/fedmri"  # the run's config keeps it as written
    data = Builder(config, log=lambda _: None).data_module(config.sites[0])
    assert data.source.context.cache_dir == ROOT / ".cache" / "fedmri"
