"""compare.py and evaluate.py on a tiny comparison: tables, best marks, reuse, cross-site metrics."""

import csv
import json
import re
import shutil

import pytest
import yaml

import compare
import evaluate
from study.runner import run_all
from study.variants import variants
from tests.conftest import ROOT, run_figures_undrawn, tiny_config_dict
from utils.hardware import cpu_identity, cpu_summary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """One tiny comparison (FedAvg, SingleSet and FedMRI with negatives all/self), one round each; the
    runs' own figures left undrawn (the comparison's figures, checked here, are drawn)."""
    tmp = tmp_path_factory.mktemp("compare")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp, rounds=1)))
    args = [
        "--config",
        str(config),
        "--algorithms",
        "fedavg,singleset",
        "--ablations",
        "negatives",
        "--name",
        "cmp",
    ]
    lines = []
    with run_figures_undrawn() as asked:
        data = run_all(compare.study_options(args), log=lines.append)
    assert asked  # the runs came to their figures
    return {"root": tmp / "runs" / "cmp", "data": data, "lines": lines, "args": args}


def test_compare_writes_tables_figures_and_trains_each_distinct_config_once(comparison):
    root, data = comparison["root"], comparison["data"]
    for name in ["comparison.md", "comparison.csv", "comparison.json", "manifest.json"] + [
        f"figures/{f}"
        for f in ("psnr_per_site.png", "reconstructions.png", "errors.png", "ablation_negatives.png")
    ]:
        assert (root / name).is_file() and (root / name).stat().st_size > 0, name
    runs = [p.name for p in (root / "runs").iterdir() if p.is_dir()]
    assert sorted(runs) == [
        "fedavg",
        "fedmri-negatives-all",
        "fedmri-negatives-self",
        "singleset",
    ]
    assert sorted(p.name for p in (root / "runs").glob("*.json")) == [f"{r}.json" for r in sorted(runs)]
    assert set(data["methods"]) == {"FedAvg", "SingleSet", "negatives: all", "negatives: self"}
    assert json.loads((root / "comparison.json").read_text())["methods"].keys() == data["methods"].keys()
    rows = list(csv.DictReader(open(root / "comparison.csv")))
    assert {(r["method"], r["site"], r["metric"]) for r in rows} == {
        (m, s, k)
        for m in data["methods"]
        for s in ("fastmri", "brats", "mean")
        for k in ("psnr", "ssim", "nmse")
    }
    # Communication: FedAvg sends and receives the whole model; SingleSet nothing.
    raw = {k: json.loads((root / "runs" / f"{k}.json").read_text()) for k in ("fedavg", "singleset")}
    fedavg, singleset = raw["fedavg"]["communication"], raw["singleset"]["communication"]
    assert fedavg["mean"]["sent_per_round"] == fedavg["mean"]["received_per_round"] > 0
    assert singleset["mean"]["sent_per_round"] == singleset["mean"]["received_per_round"] == 0
    # Compute, from each run's timing.json: 6 training slices in batches of 2, 1 local epoch per round.
    for record in raw.values():
        timing = record["timing"]
        assert timing["local_steps_per_round"] == 3.0 and timing["rounds_timed"] == 1
        assert timing["seconds_per_round"] > 0
    table = (root / "comparison.md").read_text()
    # Seconds per round carry the precision the run trained at (auto resolves differently per CPU) and
    # the CPU they were measured on.
    machine = re.escape(f"{record['precision']}; {cpu_summary(cpu_identity())}")
    assert re.search(rf"\| FedAvg \| [\d.]+ \| [\d.]+ \| 3\.0 \| \d+\.\d \({machine}\) \|", table)


def test_raw_files_hold_every_test_volume_and_the_run_results_summarise_them(comparison):
    """The raw file of a run lists each test volume's metrics; their mean is the run's own summary."""
    root = comparison["root"]
    results = json.loads((root / "runs" / "fedavg" / "results.json").read_text())
    raw = json.loads((root / "runs" / "fedavg.json").read_text())
    for site, values in results["sites"].items():
        volumes = raw["sites"][site]["volumes"]
        assert volumes.keys() == values["volumes"].keys() and len(volumes) == values["model"]["volumes"]
        for metric in ("psnr", "ssim", "nmse"):
            mean = sum(v["model"][metric] for v in volumes.values()) / len(volumes)
            assert mean == pytest.approx(values["model"][metric], rel=1e-5)
        assert raw["sites"][site]["best_round"] == values["best_round"]
        assert len(raw["val_psnr"][site]) == results["rounds"]


def test_compare_marks_the_best_mean_psnr(comparison):
    data, text = comparison["data"], (comparison["root"] / "comparison.md").read_text()
    psnr = text.split("## PSNR (dB)")[1].split("##")[0]
    rows = {
        line.split("|")[1].strip(): line.split("|")[-2].strip()
        for line in psnr.splitlines()[3:]
        if "|" in line
    }
    means = {m: round(data["methods"][m]["mean"]["psnr"]["mean"], 2) for m in ("FedAvg", "SingleSet")}
    best = {m for m, v in means.items() if v == max(means.values())}
    for method in means:
        assert rows[method].startswith("**") == (method in best), (method, rows[method])
    assert "zero-filled input" in rows and not rows["zero-filled input"].startswith("**")
    assert "## Ablation: negatives (FedMRI)" in text and "## Compute, traffic and convergence" in text
    assert re.search(r"Command: `python compare.py --config .*--ablations negatives", text)


def test_report_rebuilds_the_tables_byte_for_byte_from_the_raw_files_alone(comparison, tmp_path):
    root = comparison["root"]
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(root / "manifest.json", copy)
    (copy / "runs").mkdir()
    for raw in (root / "runs").glob("*.json"):  # the raw files only: no model, no run folder
        shutil.copy(raw, copy / "runs")
    assert compare.main(["--report", str(copy)]) == 0
    for name in ("comparison.md", "comparison.csv", "comparison.json"):
        assert (copy / name).read_bytes() == (root / name).read_bytes(), name
    assert (copy / "figures" / "psnr_per_site.png").is_file()


def _interrupt_at_round(monkeypatch, stop_at: int) -> None:
    """Make the next federation raise KeyboardInterrupt when it starts round ``stop_at``."""
    from fl.federation import Federation

    real = Federation.round

    def round(self, rnd):
        if rnd == stop_at:
            monkeypatch.setattr(Federation, "round", real)
            raise KeyboardInterrupt
        return real(self, rnd)

    monkeypatch.setattr(Federation, "round", round)


def test_an_interrupted_comparison_resumes_its_run_and_ends_as_if_uninterrupted(tmp_path, monkeypatch):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, rounds=2)))

    def run(name, log):
        args = ["--config", str(config), "--algorithms", "fedavg", "--name", name]
        return run_all(compare.study_options(args), log=log)

    reference = run("straight", lambda _: None)["methods"]["FedAvg"]
    _interrupt_at_round(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run("cut", lambda _: None)
    run_dir = tmp_path / "runs" / "cut" / "runs" / "fedavg"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "results.json").exists()
    lines = []
    resumed = run("cut", lines.append)["methods"]["FedAvg"]
    assert any("resuming" in line and "after round 1" in line for line in lines)
    assert sum(line.strip().startswith("round ") for line in lines) == 1  # only round 2 was trained
    assert resumed == reference


def test_parallel_jobs_train_the_same_runs_as_one_process(comparison, monkeypatch):
    """--jobs 2 spawns worker processes; with the same thread count the results are identical."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = [*comparison["args"], "--name", "parallel", "--jobs", "2"]
    lines = []
    data = run_all(compare.study_options(args), log=lines.append)
    assert any("4 runs, 2 at a time, 1 torch thread(s) each" in line for line in lines)
    assert sum(": done in " in line for line in lines) == 4
    assert (comparison["root"].parent / "parallel" / "comparison.md").is_file()
    reference = comparison["data"]["methods"]
    assert data["methods"].keys() == reference.keys()
    for method, values in reference.items():
        assert data["methods"][method] == values, method


def test_a_changed_config_never_inherits_the_earlier_runs_results(tmp_path, monkeypatch):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, rounds=1)))
    args = ["--config", str(config), "--algorithms", "singleset", "--name", "cmp"]
    run_all(compare.study_options(args), log=lambda _: None)
    run_dir = tmp_path / "runs" / "cmp" / "runs" / "singleset"
    assert (run_dir / "results.json").is_file()
    # The same variant with 2 rounds, interrupted after round 1: the 1-round results must be gone.
    _interrupt_at_round(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_all(compare.study_options([*args, "fl.rounds=2"]), log=lambda _: None)
    assert not (run_dir / "results.json").exists()
    lines = []
    run_all(compare.study_options([*args, "fl.rounds=2"]), log=lines.append)
    assert any("resuming" in line for line in lines) and not any(line.endswith("reused") for line in lines)


def test_evaluate_run_reproduces_the_test_metrics_and_fills_the_cross_site_matrix(comparison, capsys):
    run = comparison["root"] / "runs" / "fedavg"
    assert evaluate.main(["--run", str(run)]) == 0
    out = run / "evaluation"
    for name in ("evaluation.md", "evaluation.csv", "evaluation.json"):
        assert (out / name).is_file()
    assert (out / "figures" / "cross_site_psnr.png").is_file()
    assert (out / "figures" / "cross_site_reconstructions.png").is_file()
    results = json.loads((run / "results.json").read_text())
    evaluation = json.loads((out / "evaluation.json").read_text())
    for site, values in results["sites"].items():
        assert evaluation["own"][site]["psnr"] == pytest.approx(values["model"]["psnr"], abs=1e-6)
    matrix = evaluation["cross_site"]
    assert set(matrix) == {"fastmri", "brats"} and all(
        set(row) == {"fastmri", "brats"} for row in matrix.values()
    )
    # After one FedAvg round every site holds the same model, so the rows of the matrix agree.
    assert matrix["fastmri"]["brats"]["psnr"] == pytest.approx(matrix["brats"]["brats"]["psnr"], abs=1e-6)
    assert "Cross-site PSNR" in (out / "evaluation.md").read_text()


def test_evaluate_a_federation_checkpoint(comparison, tmp_path):
    ckpt = comparison["root"] / "runs" / "fedmri-negatives-self" / "checkpoints" / "last.ckpt"
    assert evaluate.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "ev")]) == 0
    evaluation = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    # FedMRI keeps decoders local, so the two sites' models differ on the same test data.
    assert evaluation["cross_site"]["fastmri"]["fastmri"] != evaluation["cross_site"]["brats"]["fastmri"]


def test_a_checkpoint_from_another_run_is_refused_naming_it(comparison, tmp_path, capsys):
    # FedAvg's best model of brats dropped into a copy of a FedMRI run: same network, other algorithm.
    runs = comparison["root"] / "runs"
    copy = tmp_path / "run"
    shutil.copytree(runs / "fedmri-negatives-self", copy)
    foreign = copy / "checkpoints" / "best_brats.ckpt"
    shutil.copy(runs / "fedavg" / "checkpoints" / "best_brats.ckpt", foreign)
    assert evaluate.main(["--run", str(copy), "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(foreign) in err[0] and "fl.algorithm ('fedavg' -> 'fedmri')" in err[0], err
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize(
    ("tool", "argv", "needle"),
    [
        (evaluate, ["--run", "no/such/run"], "no/such/run"),
        (compare, ["--algorithms", "fedfoo"], "--algorithms"),
        (compare, ["--algorithms", "fedavg", "--local-epochs", "x"], "--local-epochs"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tool, argv, needle, capsys):
    assert tool.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]


def test_domain_ablation_trains_both_models_for_fedmri_and_fedavg():
    from assembly.config import load_config

    base = load_config(ROOT / "configs" / "default.yaml")
    found = {v.key: v for v in variants([], ["domain"], base, [1])}
    assert set(found) == {"fedmri", "fedmri-dual", "fedavg", "fedavg-dual"}
    assert "model.kind=dual_domain" in found["fedavg-dual"].overrides
    assert "fl.algorithm=fedmri" in found["fedmri-dual"].overrides
    assert all(v.families == ["domain"] for v in found.values())
