"""evaluate.py tests each site's best round by default and says so; ``--weights last`` tests the
weights after the last completed round."""

import json

import pytest

import evaluate
from assembly.build import Builder
from assembly.setup import in_process


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from assembly.config import validate_config
    from tests.conftest import tiny_config_dict

    config = validate_config(tiny_config_dict(tmp_path_factory.mktemp("weights"), rounds=3))
    in_process(Builder(config, log=lambda _: None)).run()
    return config.run_dir


def evaluated(run, capsys, *args):
    out = run / f"evaluation{len(args)}"
    assert evaluate.main(["--run", str(run), "--out", str(out), *args]) == 0
    return json.loads((out / "evaluation.json").read_text()), capsys.readouterr().out


def test_the_default_is_each_sites_best_round_and_the_output_says_so(run, capsys):
    results = json.loads((run / "results.json").read_text())
    best = {site: values["best_round"] for site, values in results["sites"].items()}
    found, printed = evaluated(run, capsys)
    assert found["weights"] == "best" and found["model_rounds"] == best
    rounds = ", ".join(f"{s} {r}" for s, r in best.items())
    assert f"weights: each site's best round by validation PSNR ({rounds}; --weights last" in printed
    assert "(each site's best round)" in (run / "evaluation0" / "evaluation.md").read_text()
    for site, values in results["sites"].items():  # the test of train.py, reproduced
        assert found["own"][site]["psnr"] == pytest.approx(values["model"]["psnr"], abs=1e-4)


def test_weights_last_tests_the_last_rounds_weights(run, capsys):
    found, printed = evaluated(run, capsys, "--weights", "last")
    assert found["weights"] == "last" and set(found["model_rounds"].values()) == {3}
    assert "weights: the weights after the last completed round (fastmri 3, brats 3)" in printed


def test_a_best_model_file_has_no_last_weights(run, capsys):
    assert evaluate.main(["--ckpt", str(run / "checkpoints" / "best_brats.ckpt"), "--weights", "last"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint ")
    assert err.endswith("best round only; --weights last reads a run's checkpoints/last.ckpt")
