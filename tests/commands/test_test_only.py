"""Test-only data sets: evaluate.py tests a run on them, train.py refuses them in one line."""

import json

import numpy as np
import pytest
import yaml

import evaluate
import train
from data.sources.splits import SplitFiles, SplitFractions, assign_splits
from tests.conftest import tiny_config_dict
from tests.fixtures.mri_files import phantom, write_nifti

pytestmark = pytest.mark.slow


def _test_only_config(tmp_path, run_config: dict, split: dict) -> dict:
    """The tiny run's config with one folder site of NIfTI phantoms that are all test data."""
    rng = np.random.default_rng(0)
    root = tmp_path / "own"
    for subject in ("s1", "s2"):
        write_nifti(root / subject / "t1.nii.gz", phantom(rng, (32, 32, 3)).astype(np.float32))
    config = json.loads(json.dumps(run_config))
    config["sites"] = [
        {
            "name": "own",
            "source": {"kind": "folder", "root": str(root), **split},
            "mask": {"kind": "random_1d", "acceleration": 4},
            "batch_size": 2,
        }
    ]
    return config


def test_fraction_and_file_splits_describe_a_test_only_data_set(tmp_path):
    subjects = {f"s{i}": [] for i in range(5)}
    assert set(assign_splits(subjects, SplitFractions(train=0, val=0, test=1), None).values()) == {"test"}
    listed = tmp_path / "test.txt"
    listed.write_text("s1\ns3\n")
    assert assign_splits(subjects, SplitFractions(), SplitFiles(test=str(listed))) == {
        "s1": "test",
        "s3": "test",
    }


@pytest.mark.parametrize("split", ["fractions", "files"])
def test_a_test_only_site_is_evaluated_and_refused_for_training(tmp_path, split, capsys):
    run_config = tiny_config_dict(tmp_path, rounds=1, algorithm="fedavg")
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(run_config))
    assert train.main(["--config", str(run_file)]) == 0
    if split == "fractions":
        spec = {"split": {"train": 0.0, "val": 0.0, "test": 1.0}}
    else:
        (tmp_path / "test.txt").write_text("s1\ns2\n")
        spec = {"split_files": {"test": str(tmp_path / "test.txt")}}
    test_file = tmp_path / "own.yaml"
    test_file.write_text(yaml.safe_dump(_test_only_config(tmp_path, run_config, spec)))
    out = tmp_path / "ev"
    run = tmp_path / "runs" / "tiny"
    assert evaluate.main(["--run", str(run), "--config", str(test_file), "--out", str(out)]) == 0
    results = json.loads((out / "evaluation.json").read_text())
    assert results["test_sites"] == ["own"]
    assert results["cross_site"]["fastmri"]["own"]["volumes"] == 2
    capsys.readouterr()
    assert train.main(["--config", str(test_file), f"output_dir={tmp_path / 'other'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: sites.own:") and "evaluate.py --config" in err[0]
