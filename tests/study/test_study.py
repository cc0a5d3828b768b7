"""A multi-seed comparison: runs per seed, intervals and paired tests recomputed with scipy from the raw
files, an interrupted study continuing with only the missing runs, and the committed study's tables
rebuilt byte for byte from its committed raw files."""

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

import compare
from study import plan, runner
from study.claims import NEARLY_FAILS
from study.records import Manifest, RunRecord
from study.report import write_report
from study.slices import load_reconstructions, save_slices
from study.tables import machine
from tests.conftest import ROOT, run_figures_undrawn, tiny_config_dict
from utils.hardware import cpu_identity, cpu_summary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """FedMRI, FedAvg and SingleSet, seeds 3 and 5, two rounds each on the tiny federation. The runs'
    own figures are left undrawn (the study's figures are drawn: they come from its raw files)."""
    tmp = tmp_path_factory.mktemp("study")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp, rounds=2)))
    results = tmp / "results"
    args = ["--config", str(config), "--algorithms", "fedmri,fedavg,singleset", "--seeds", "3,5",
            "--results", str(results), "--name", "study"]  # fmt: skip
    lines: list[str] = []
    with run_figures_undrawn() as asked:
        data = runner.run_all(compare.study_options(args), log=lines.append)
    assert asked  # the runs came to their figures
    return {"tmp": tmp, "results": results, "args": args, "data": data, "lines": lines}


def _raw(results: Path, key: str) -> dict:
    return json.loads((results / "runs" / f"{key}.json").read_text())


def test_every_variant_trains_once_per_seed_with_that_seed(study):
    results, tmp = study["results"], study["tmp"]
    keys = sorted(p.stem for p in (results / "runs").glob("*.json"))
    assert keys == ["fedavg-s3", "fedavg-s5", "fedmri-s3", "fedmri-s5", "singleset-s3", "singleset-s5"]
    for key in keys:
        saved = yaml.safe_load((tmp / "runs" / "study" / "runs" / key / "config.yaml").read_text())
        assert saved["seed"] == int(key[-1]) == _raw(results, key)["seed"]
        # The precision it trained at, as resolved on this machine (auto differs between CPUs).
        assert _raw(results, key)["precision"] == saved["trainer"]["precision"] != "auto"
        # and what its seconds per round were measured on
        timing = _raw(results, key)["timing"]
        assert timing["cpu"] == cpu_identity() and timing["rounds_timed"] == 2 and timing["threads"] >= 1
    compute = (results / "comparison.md").read_text().split("## Compute", 1)[1]
    assert f"({saved['trainer']['precision']}; {cpu_summary(cpu_identity())})" in compute
    # Different seeds give different models (initialisation, data order, masks).
    a, b = _raw(results, "fedavg-s3"), _raw(results, "fedavg-s5")
    assert a["sites"]["fastmri"]["volumes"] != b["sites"]["fastmri"]["volumes"]
    assert study["data"]["methods"]["FedAvg"]["seeds"] == [3, 5]
    # The t-SNE methods present (SingleSet, FedAvg and FedMRI) are embedded once per run and drawn.
    assert sorted(p.stem for p in (results / "latent").iterdir()) == keys
    assert (results / "figures" / "tsne.png").is_file() and (results / "figures" / "val_psnr.png").is_file()
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["seeds"] == [3, 5] and "--seeds 3,5" in manifest["command"]


def test_fedmri_raw_files_keep_the_terms_diagnostics_of_every_round(study):
    tmp, results = study["tmp"], study["results"]
    rows = list(csv.DictReader(open(tmp / "runs" / "study" / "runs" / "fedmri-s3" / "metrics.csv")))
    term = _raw(results, "fedmri-s3")["term"]
    assert sorted(term) == ["brats", "fastmri"]
    for site, columns in term.items():
        train = [r for r in rows if r["site"] == site and r["split"] == "train"]
        train.sort(key=lambda r: int(r["round"]))
        assert len(columns["penalty"]) == len(train) == 2
        assert columns["con_l_con"][0] is None  # the term starts in round 2
        for column in ("penalty", "con_l_con", "con_outside", "con_dist", "con_spread", "loss_rec"):
            assert columns[column][1] == pytest.approx(float(train[1][column]), rel=1e-5), column
    assert "term" not in _raw(results, "fedavg-s3") and "term" not in _raw(results, "singleset-s3")


def test_intervals_and_paired_tests_equal_a_direct_scipy_computation(study):
    results = study["results"]
    sites = ["fastmri", "brats"]
    rows = {
        (r["method"], r["site"], r["metric"]): r for r in csv.DictReader(open(results / "comparison.csv"))
    }

    def site_mean(key, site, metric):
        return np.mean([v["model"][metric] for v in _raw(results, key)["sites"][site]["volumes"].values()])

    # The mean over sites of FedAvg's PSNR: mean over seeds with its t interval.
    per_seed = [np.mean([site_mean(f"fedavg-s{s}", x, "psnr") for x in sites]) for s in (3, 5)]
    sem = np.std(per_seed, ddof=1) / np.sqrt(2)
    cell = rows[("FedAvg", "mean", "psnr")]
    assert float(cell["mean"]) == pytest.approx(np.mean(per_seed), rel=1e-5)
    assert float(cell["spread"]) == pytest.approx(stats.t.ppf(0.975, 1) * sem, rel=1e-5)
    assert cell["spread_kind"] == "ci"
    # FedAvg against FedMRI on brats, the seed as the unit: per seed the mean difference over the
    # site's volumes, then a paired t-test over the seeds.
    per_seed = {}
    for seed in (3, 5):
        a = _raw(results, f"fedavg-s{seed}")["sites"]["brats"]["volumes"]
        b = _raw(results, f"fedmri-s{seed}")["sites"]["brats"]["volumes"]
        per_seed[seed] = np.mean([a[v]["model"]["ssim"] - b[v]["model"]["ssim"] for v in sorted(a)])
    cell = rows[("FedAvg", "brats", "ssim")]
    diff = np.array(list(per_seed.values()))
    assert int(cell["paired_seeds"]) == 2 and int(cell["volume_pairs"]) == 2
    assert float(cell["diff_vs_fedmri"]) == pytest.approx(diff.mean(), rel=1e-5)
    assert float(cell["diff_half_width"]) == pytest.approx(
        stats.t.ppf(0.975, 1) * np.std(diff, ddof=1) / np.sqrt(2), rel=1e-5
    )
    expected_p = stats.ttest_1samp(diff, 0.0).pvalue if np.any(diff) else 1.0
    assert float(cell["p_value"]) == pytest.approx(expected_p, rel=1e-5)
    assert rows[("FedMRI", "brats", "ssim")]["verdict"] == ""  # the reference is not compared with itself


def test_an_interrupted_study_continues_with_only_the_missing_runs(study):
    tmp, results = study["tmp"], study["results"]
    before = (results / "comparison.md").read_bytes()
    shutil.rmtree(tmp / "runs" / "study" / "runs" / "fedavg-s5")
    (results / "runs" / "fedavg-s5.json").unlink()
    lines: list[str] = []
    runner.run_all(compare.study_options(study["args"]), log=lines.append)
    assert sum(line.endswith("reused") for line in lines) == 5
    assert sum(": done in " in line for line in lines) == 1 and any("fedavg-s5: done" in ln for ln in lines)
    # The retrained run repeats bit for bit, so the tables come out the same (all but the wall seconds
    # per round of the compute table, which depend on what else the machine was doing).
    assert _without_wall_time((results / "comparison.md").read_text()) == _without_wall_time(before.decode())


def test_no_train_writes_the_outputs_of_the_finished_runs_and_trains_none(study):
    tmp, results = study["tmp"], study["results"]
    shutil.rmtree(tmp / "runs" / "study" / "runs" / "singleset-s3")
    (results / "runs" / "singleset-s3.json").unlink()
    (results / "slices" / "singleset-s3.npz").unlink()
    (results / "figures" / "reconstructions.png").unlink()
    lines: list[str] = []
    runner.run_all(compare.study_options([*study["args"], "--no-train"]), log=lines.append)
    assert not (tmp / "runs" / "study" / "runs" / "singleset-s3").exists()
    assert any(ln.startswith("--no-train: 1 run(s) left untrained: singleset-s3") for ln in lines), lines
    assert 'Not finished yet (1 of 6 runs): seed 3: "SingleSet".' in (results / "comparison.md").read_text()
    # Seed 3 lacks a method's slices: the reconstruction figures show seed 5, whose methods are all in.
    assert (results / "figures" / "reconstructions.png").is_file()
    assert "(reconstructions of seed 5)" in lines[-1], lines[-1]
    lines.clear()
    runner.run_all(compare.study_options(study["args"]), log=lines.append)  # and the study goes on
    assert "Not finished" not in (results / "comparison.md").read_text()
    assert (results / "slices" / "singleset-s3.npz").is_file() and "(reconstructions of seed 3)" in lines[-1]


def test_each_finished_run_writes_its_latent_file_and_the_tables_at_once(study):
    # The outputs follow every run, so an interrupted study keeps them: each log line of a finished
    # run is followed by the tables written from the raw files so far.
    lines = study["lines"]
    done = [i for i, ln in enumerate(lines) if ": done in " in ln]
    assert len(done) == 6
    wrote = f"wrote {study['results']}/comparison.md"
    for i in done:
        assert any(ln.startswith(wrote) for ln in lines[i + 1 : i + 4]), lines
    # Each run saves its reconstructions of the figure slices with its raw file; the figures show seed 3
    # once its three methods are in, and seed 5 never (seed 3 comes first).
    keys = [f"{m}-s{s}" for m in ("fedavg", "fedmri", "singleset") for s in (3, 5)]
    saved = sorted(p.stem for p in (study["results"] / "slices").iterdir())
    assert saved == sorted([*keys, "seed3-inputs", "seed5-inputs"])
    wrote = [ln for ln in lines if ln.startswith(f"wrote {study['results']}/comparison.md")]
    seeds = [ln.split("(reconstructions of seed ")[1][0] for ln in wrote if "(reconstructions of seed" in ln]
    assert seeds and set(seeds) == {"3"}, wrote
    assert "(reconstructions of seed" not in wrote[0]  # the first run alone does not complete seed 3
    assert sorted(p.name for p in (study["results"] / "latent").iterdir()) == [
        f"{m}-s{s}.json" for m in ("fedavg", "fedmri", "singleset") for s in (3, 5)
    ]


def test_the_report_names_each_missing_run_once_under_its_seed(study, tmp_path):
    copy = tmp_path / "partial"
    shutil.copytree(study["results"], copy)
    for key in ("fedavg-s5", "fedmri-s3"):
        (copy / "runs" / f"{key}.json").unlink()
    write_report(copy, log=lambda _: None)
    lines = [ln for ln in (copy / "comparison.md").read_text().splitlines() if ln.startswith("Not finished")]
    assert lines == ['Not finished yet (2 of 6 runs): seed 3: "FedMRI"; seed 5: "FedAvg".']
    (copy / "runs" / "fedavg-s5.json").write_text((study["results"] / "runs" / "fedavg-s5.json").read_text())
    (copy / "runs" / "fedmri-s3.json").write_text((study["results"] / "runs" / "fedmri-s3.json").read_text())
    write_report(copy, log=lambda _: None)
    assert "Not finished" not in (copy / "comparison.md").read_text()


def test_the_compute_table_says_what_each_time_was_measured_on():
    cpu = "AuthenticAMD; AMD EPYC; family/model/stepping 25/17/1; caches L1 32K; avx2 avx512f avx512_bf16"
    timed = {"seconds_per_round": 1.0}

    def machine_of(**raw):
        return machine(RunRecord.model_validate(
            {"overrides": [], "sites": {}, "val_psnr": {}, "communication": None, **raw}
        ))  # fmt: skip

    assert machine_of(precision="32-true", timing={**timed, "cpu": cpu}) == "32-true; AMD EPYC, AVX-512 BF16"
    gpu = {**timed, "cpu": cpu, "gpu": "NVIDIA H200"}
    assert machine_of(precision="bf16-mixed", timing=gpu) == "bf16-mixed; NVIDIA H200"
    # raw files written before timing named the machine: the precision alone, or nothing
    assert machine_of(precision="32-true", timing=timed) == "32-true"
    assert machine_of(timing=timed) == ""


def _without_wall_time(markdown: str) -> str:
    """``markdown`` without the compute table's "s per round" column (its fifth)."""
    head, compute = markdown.split("## Compute", 1)
    lines = [line.split("|") for line in compute.splitlines()]
    return head + "\n".join("|".join(c[:5] + c[6:]) if len(c) > 6 else "|".join(c) for c in lines)


def test_a_fresh_clone_of_a_study_keeps_its_committed_raw_files_instead_of_retraining(study):
    # A clone holds docs/results/<study>/runs but none of the run folders that made them.
    tmp, results = study["tmp"], study["results"]
    clone = tmp / "clone"
    shutil.copytree(results, clone)
    (clone / "comparison.md").unlink()
    args = [*study["args"], "--results", str(clone), "--name", "clone"]
    lines: list[str] = []
    runner.run_all(compare.study_options(args), log=lines.append)
    assert sum("(no run folder)" in line for line in lines) == 6, lines
    assert not any(": done in " in line or ": queued" in line for line in lines)
    # The same tables; only the command line in the header names the clone.
    mine, theirs = ((d / "comparison.md").read_text().split("\n", 3) for d in (clone, results))
    assert "--name clone" in mine[2] and mine[3] == theirs[3]
    # and the same reconstruction figures, from the committed slices
    for name in ("reconstructions.png", "errors.png"):
        assert (clone / "figures" / name).read_bytes() == (results / "figures" / name).read_bytes()
    # A raw file of another schedule (or seed, algorithm, overrides) is no result of this run: retrained.
    raw = json.loads((clone / "runs" / "fedavg-s5.json").read_text())
    raw["rounds"] = 7
    (clone / "runs" / "fedavg-s5.json").write_text(json.dumps(raw))
    lines.clear()
    runner.run_all(compare.study_options(args), log=lines.append)
    assert [ln.split("] ")[1].split(":")[0] for ln in lines if ": training (" in ln] == ["fedavg-s5"]
    assert _raw(clone, "fedavg-s5")["rounds"] == 2


def test_report_errors_are_one_line(tmp_path, capsys):
    assert compare.main(["--report", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0]
    assert compare.main(["--algorithms", "fedavg", "--seeds", "1,x"]) == 2
    assert "--seeds" in capsys.readouterr().err
    # --report reads the folder alone: options that would choose or train runs are refused, not ignored.
    argv = ["--report", str(tmp_path), "--algorithms", "fedavg", "--seeds", "0,1", "fl.rounds=3"]
    assert compare.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--algorithms, --seeds, overrides would change nothing" in err[0], err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--results", "FILE"], "--results: "),
        (["--name", "../../escaped"], "--name: '../../escaped'"),
        (["--name", "sub/study"], "--name: 'sub/study'"),
        (["--jobs", "0"], "--jobs: must be >= 1"),
        (["--first", "nosuch"], "--first: no variant nosuch"),
    ],
)
def test_bad_output_options_are_one_line_before_anything_is_written(
    argv, needle, tmp_path, capsys, tiny_config_file
):
    config = tiny_config_file(rounds=1)
    file = tmp_path / "file"
    file.write_text("")
    argv = [str(file) if a == "FILE" else a for a in argv]
    assert compare.main(["--config", str(config), "--algorithms", "fedavg", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "tiny.yaml"]
    assert not (tmp_path.parent / "escaped").exists()


STUDY = ROOT / "docs" / "results" / "study_30rounds"  # a finished study: every row with three seeds
COMMITTED_STUDIES = sorted(p.parent for p in (ROOT / "docs" / "results").glob("*/manifest.json"))


def _edit_json(change):
    return lambda text: json.dumps(change(json.loads(text)))


def _without(data, key):
    return {k: v for k, v in data.items() if k != key}


@pytest.mark.skipif(not (STUDY / "comparison.md").is_file(), reason="no committed study")
@pytest.mark.parametrize(
    ("file", "change", "needle"),
    [
        ("manifest.json", _edit_json(lambda m: [m]), "manifest.json: expected an object, found a list"),
        ("manifest.json", _edit_json(lambda m: _without(m, "seeds")), "manifest.json: no key 'seeds'"),
        ("manifest.json", _edit_json(lambda m: m | {"rows": [_without(m["rows"][0], "runs")]}),
         "manifest.json: rows[0]: no key 'runs'"),
        ("manifest.json", _edit_json(lambda m: m | {"rows": [m["rows"][0] | {"runs": [1]}]}),
         "manifest.json: rows[0].runs: expected an object, found a list"),
        ("manifest.json", _edit_json(lambda m: m | {"rows": [m["rows"][0] | {"runs": {"0": "../../x"}}]}),
         "manifest.json: rows[0].runs.0: '../../x' is not a run name"),
        ("runs/fedmri-s0.json", lambda _: "{}", "runs/fedmri-s0.json: no key 'overrides'"),
        ("runs/fedmri-s0.json", lambda _: "[]", "runs/fedmri-s0.json: expected an object, found a list"),
        ("runs/fedmri-s0.json", _edit_json(lambda r: r | {"sites": {}}), "runs/fedmri-s0.json: sites: no "),
        ("latent/fedmri-s0.json", lambda text: text[:100], "latent/fedmri-s0.json: not valid JSON"),
        ("latent/fedmri-s0.json", lambda _: "{}", "latent/fedmri-s0.json: no key 'labels'"),
    ],
)  # fmt: skip
def test_raw_files_of_the_wrong_structure_are_one_line_and_leave_the_report(
    file, change, needle, tmp_path, capsys
):
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(STUDY / "manifest.json", folder)
    shutil.copytree(STUDY / "runs", folder / "runs")
    shutil.copytree(STUDY / "latent", folder / "latent")
    for name in ("comparison.md", "comparison.csv", "comparison.json", "claims.md", "figures/tsne.png"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("the earlier report\n")
    (folder / file).write_text(change((folder / file).read_text()))
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert compare.main(["--report", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("study", COMMITTED_STUDIES, ids=lambda p: p.name)
def test_the_committed_study_tables_come_from_its_committed_raw_files(study, tmp_path):
    assert (study / "runs").is_dir(), f"{study}/runs: the raw files the committed tables were made from"
    copy = tmp_path / study.name
    copy.mkdir()
    shutil.copy(study / "manifest.json", copy)
    shutil.copytree(study / "runs", copy / "runs")
    if (study / "latent").is_dir():
        shutil.copytree(study / "latent", copy / "latent")
    write_report(copy, log=lambda _: None)
    for name in ("comparison.md", "comparison.csv", "comparison.json", "claims.md"):
        if (study / name).is_file() or (copy / name).is_file():
            assert (copy / name).read_bytes() == (study / name).read_bytes(), f"{study.name}/{name}"


def test_every_committed_study_has_its_tables_in_results_md():
    sys.path.insert(0, str(ROOT / "docs" / "results"))
    import refresh_results

    text = (ROOT / "RESULTS.md").read_text()
    for study in COMMITTED_STUDIES:
        for name, body in refresh_results.blocks(study).items():
            start, end = f"<!-- {study.name}:{name} -->", f"<!-- /{study.name}:{name} -->"
            assert start in text and end in text, f"RESULTS.md: no {start} markers"
            inside = text.split(start, 1)[1].split(end, 1)[0]
            assert inside.strip() == body.strip(), f"RESULTS.md: {start} differs from {study.name}'s report"


def test_two_schedules_pairs_the_same_run_of_both_studies_and_averages_each_methods_gain(tmp_path):
    sys.path.insert(0, str(ROOT / "docs" / "results"))
    import two_schedules

    def raw(folder, name, site_psnrs):
        folder.mkdir(exist_ok=True)
        sites = {
            f"site{i}": {"volumes": {f"v{j}": {"model": {"psnr": p}} for j, p in enumerate(psnrs)}}
            for i, psnrs in enumerate(site_psnrs)
        }
        (folder / f"{name}.json").write_text(json.dumps({"sites": sites}))

    short, long = tmp_path / "short", tmp_path / "long"
    raw(short, "fedavg-s0", [[20, 22], [30]])  # mean over sites of site means: (21 + 30) / 2 = 25.5
    raw(long, "fedavg-s0", [[21, 23], [31]])  # 26.5
    raw(short, "fedavg-s1", [[24], [26]])  # 25
    raw(long, "fedavg-s1", [[27], [26]])  # 26.5
    raw(short, "fedmri-beta0-s0", [[25]])
    raw(long, "fedmri-beta0-s0", [[24.5]])
    raw(long, "moon-s0", [[30]])  # only in the 60-round study: not paired
    runs = two_schedules.gains(short, long)
    assert runs == {"fedavg-s0": (25.5, 26.5), "fedavg-s1": (25.0, 26.5), "fedmri-beta0-s0": (25.0, 24.5)}
    assert two_schedules.by_method(runs) == {"fedavg": [1.0, 1.5], "fedmri-beta0": [-0.5]}


def test_pilot_schedules_reads_every_shorter_schedule_off_a_longer_run(tmp_path):
    sys.path.insert(0, str(ROOT / "docs" / "results" / "pilot"))
    import schedules

    # rises 0.1 dB a round to round 50, then flat: the 40-round prefix gains 8 x 0.1 dB in its last fifth
    curve = [20 + 0.1 * min(r, 50) for r in range(1, 81)]
    path = tmp_path / "fedavg-s1.json"
    path.write_text(json.dumps({"rounds": 80, "precision": "32-true", "val_psnr": {"a": curve}}))

    def schedules_of(lines):
        return [line.split(":")[0].strip() for line in lines[1:]]

    lines = schedules.report(path).splitlines()
    assert schedules_of(lines) == ["first 40 rounds", "first 60 rounds", "first 80 rounds"]
    assert "a +0.80 dB (best round 40)" in lines[1]
    assert "a +0.00 dB (best round 50)" in lines[3]
    path.write_text(json.dumps({"rounds": 30, "val_psnr": {"a": curve[:30]}}))
    assert schedules_of(schedules.report(path).splitlines()) == ["first 30 rounds"]


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)
def test_git_keeps_the_study_raw_results():
    # A .gitignore rule meant for training outputs (runs/) once matched docs/results/study/runs too.
    assert plan.git_ignore_rule(STUDY / "runs" / "fedmri-s0.json") is None
    assert plan.git_ignore_rule(ROOT / "runs" / "study" / "runs" / "x" / "results.json") is not None


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_results_in_a_git_ignored_folder_are_named_in_a_warning(tmp_path):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.tmp\nruns/\n")
    rule = plan.git_ignore_rule(tmp_path / "docs" / "study" / "runs" / "run.json")
    assert rule is not None and rule.endswith(":2:runs/"), rule
    assert plan.git_ignore_rule(tmp_path / "docs" / "study" / "manifest.json") is None
    assert plan.git_ignore_rule(tmp_path.parent / "elsewhere" / "runs" / "run.json") is None


def test_first_variants_train_with_all_their_seeds_before_the_rest(study):
    args = [
        *study["args"],
        "--name",
        "ordered",
        "--results",
        str(study["tmp"] / "ordered"),
        "--first",
        "fedavg",
        "fl.rounds=1",  # the order of the runs is what counts here, not their rounds or figures
    ]
    lines: list[str] = []
    with run_figures_undrawn():
        runner.run_all(compare.study_options(args), log=lines.append)
    trained = [line.split("] ")[1].split(":")[0] for line in lines if ": training (" in line]
    assert trained == ["fedavg-s3", "fedavg-s5", "fedmri-s3", "singleset-s3", "fedmri-s5", "singleset-s5"]
    assert compare.main([*study["args"], "--first", "fedfoo"]) == 2


def test_workers_end_when_the_comparison_is_killed(tmp_path):
    """Killing compare.py (not its process group) must not leave --jobs workers training on: the next
    comparison would meet their run locks."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, rounds=200)))
    args = [sys.executable, str(ROOT / "compare.py"), "--config", str(config), "--algorithms",
            "fedavg,singleset", "--jobs", "2", "--name", "killed"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = tmp_path / "runs" / "killed" / "runs"
    deadline = time.time() + 120
    pids: list[int] = []
    while time.time() < deadline and len(pids) < 2:
        time.sleep(0.5)
        pids = [int(t) for p in locks.glob(".*.lock") if (t := p.read_text().strip()).isdigit()]
    assert len(pids) == 2, "the workers never started"
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.time() + 30
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.5)
    survivors = [p for p in pids if alive(p)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "workers outlived the comparison"


def test_claims_table_counts_the_paired_verdicts_of_the_csv(study):
    results = study["results"]
    claims = (results / "claims.md").read_text()
    rows = [
        r for r in csv.DictReader(open(results / "comparison.csv")) if r["method"] in ("FedAvg", "SingleSet")
    ]
    per_site = [r["verdict"] for r in rows if r["site"] != "mean"]
    assert len(per_site) == 12  # 2 methods x 2 sites x 3 metrics
    expected = (
        f"of 12 (method, site, metric) pairs against FedMRI, {per_site.count('worse')} worse, "
        f"{per_site.count('better')} better, {per_site.count('no detectable difference')} not detectable"
    )
    assert expected in claims
    assert "FedAvg nearly fails on the most shifted sites" in claims
    # The t-SNE claim: FedMRI's silhouette minus SingleSet's, seed by seed, from the latent files.
    silhouette = {
        key: json.loads((results / "latent" / f"{key}.json").read_text())["separability"]["silhouette"]
        for key in ("fedmri-s3", "fedmri-s5", "singleset-s3", "singleset-s5")
    }
    gaps = [silhouette[f"fedmri-s{s}"] - silhouette[f"singleset-s{s}"] for s in (3, 5)]
    half = stats.t.ppf(0.975, 1) * np.std(gaps, ddof=1) / np.sqrt(2)
    line = next(ln for ln in claims.splitlines() if "common space" in ln)
    assert f"FedMRI − SingleSet silhouette {np.mean(gaps):+.3f} ± {half:.3f} over seeds 3, 5" in line
    assert NEARLY_FAILS == 0.5 and "50%" in claims


def test_report_redraws_the_reconstruction_figures_from_the_committed_slices(study, tmp_path, capsys):
    # The figures come from <results>/slices/ like the tables from runs/: a clone without the run folders
    # redraws them byte for byte.
    copy = tmp_path / "results"
    shutil.copytree(study["results"], copy)
    names = ("figures/reconstructions.png", "figures/errors.png")
    drawn = {n: (copy / n).read_bytes() for n in names}
    assert all(p.stat().st_size < 100_000 for p in (copy / "slices").iterdir())
    for n in names:
        (copy / n).unlink()
    assert compare.main(["--report", str(copy)]) == 0
    assert {n: (copy / n).read_bytes() for n in names} == drawn
    # The slices are those of the runs: FedAvg's seed-3 row is its model's reconstruction of the slice.
    manifest = Manifest.model_validate_json((copy / "manifest.json").read_text())
    seed, columns, targets, rows = load_reconstructions(copy, manifest)
    assert seed == 3 and [label for label, _ in rows] == ["zero-filled", "FedMRI", "FedAvg", "SingleSet"]
    assert len(columns) == len(targets) == 2 and all(len(images) == 2 for _, images in rows)
    assert not np.array_equal(rows[2][1][0], rows[3][1][0])  # FedAvg's and SingleSet's differ
    # Writing the same slices again gives the same bytes (nothing changes in a committed folder).
    before = (copy / "slices" / "fedavg-s3.npz").read_bytes()
    save_slices(copy, "fedavg-s3", 3, columns, rows[2][1], rows[0][1], targets)
    assert (copy / "slices" / "fedavg-s3.npz").read_bytes() == before
    # A seed's inputs, rounded differently in their last float16 bit (another CPU), are kept as they
    # were written; other inputs replace them.
    inputs_path = copy / "slices" / "seed3-inputs.npz"
    inputs = inputs_path.read_bytes()
    ulp = [np.nextafter(x.astype(np.float16), np.float16(np.inf)) for x in rows[0][1]]
    save_slices(copy, "fedavg-s3", 3, columns, rows[2][1], ulp, targets)
    assert inputs_path.read_bytes() == inputs
    shifted = [x + 0.1 for x in rows[0][1]]
    save_slices(copy, "fedavg-s3", 3, columns, rows[2][1], shifted, targets)
    assert inputs_path.read_bytes() != inputs
    inputs_path.write_bytes(inputs)
    # A damaged slices file is one line, and the report's earlier files stay as they were.
    (copy / "slices" / "fedavg-s3.npz").write_bytes(b"PK\x03\x04 cut short")
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert compare.main(["--report", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fedavg-s3.npz: not a readable slices file" in err[0], err
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    # Slices of other test slices than the rest of their seed's are named, not drawn side by side.
    inputs = (copy / "slices" / "seed3-inputs.npz").read_bytes()
    save_slices(copy, "fedavg-s3", 3, ["x", "y"], rows[2][1], rows[0][1], targets)
    (copy / "slices" / "seed3-inputs.npz").write_bytes(inputs)  # the rest of seed 3 as it was
    assert compare.main(["--report", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fedavg-s3.npz: its figure slices are ['x', 'y']" in err[0], err


def test_each_finished_run_says_how_many_runs_and_rounds_are_left(study):
    done = [ln for ln in study["lines"] if ": done in " in ln]
    for i, line in enumerate(done[:-1]):
        left = len(done) - 1 - i
        assert f"left ({left} run(s), {2 * left} rounds)" in line, line
    assert " left" not in done[-1]


def test_rounds_done_reads_the_last_validation_row_of_a_run(tmp_path):
    assert runner.rounds_done(tmp_path) == 0  # no metrics.csv yet
    assert not (tmp_path / "metrics.csv").exists()  # read only: no header written
    rows = ["round,site,split,psnr", "1,a,train,", "1,a,val,20", "2,a,val,21", "3,a,train,", "3,a,va"]
    (tmp_path / "metrics.csv").write_text("\n".join(rows))  # round 3 cut short while it was written
    assert runner.rounds_done(tmp_path) == 2
    for foreign in ("a,b\n1,2\n", "round,site,split\ntwo,a,val\n"):  # not a run's log: no round done
        (tmp_path / "metrics.csv").write_text(foreign)
        assert runner.rounds_done(tmp_path) == 0
        assert (tmp_path / "metrics.csv").read_text() == foreign


def test_time_left_schedules_each_run_on_the_first_free_slot():
    assert runner.time_left([49], 2.0, 2) == 98.0
    assert runner.time_left([10, 10, 10], 1.0, 2) == 20.0  # two at once, then the third
    assert runner.time_left([30, 10, 10], 1.0, 2) == 30.0  # the short ones share the second slot
    assert runner.time_left([5, 5], 1.0, 1) == 10.0


def _hand_study(folder: Path, shifts: dict[int, float], volumes: int = 12, noise: float = 0.02) -> Path:
    """A results folder of hand-made raw files: FedMRI and FedAvg on two sites, one seed per entry of
    ``shifts``; FedAvg's PSNR is FedMRI's plus the seed's shift plus a little noise per volume."""
    rng = np.random.default_rng(7)
    (folder / "runs").mkdir(parents=True)
    sites = ["a", "b"]
    rows = []
    for algorithm in ("fedmri", "fedavg"):
        rows.append({"label": {"fedmri": "FedMRI", "fedavg": "FedAvg"}[algorithm], "families": ["comparison"],
                     "algorithm": algorithm,
                     "runs": {str(s): f"{algorithm}-s{s}" for s in shifts}})  # fmt: skip
    manifest = {"command": "hand-made", "config": "none", "rounds": 5, "local_epochs": 1, "sites": sites,
                "seeds": sorted(shifts), "ablations": [], "rows": rows}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for seed, shift in shifts.items():
        base = {s: rng.normal(27.0, 1.0, volumes) for s in sites}
        for algorithm, add in (("fedmri", 0.0), ("fedavg", shift)):
            record = {
                "seed": seed, "algorithm": algorithm, "overrides": [f"fl.algorithm={algorithm}"], "rounds": 5,
                "sites": {
                    s: {"best_round": 5, "volumes": {
                        f"v{j}": {"model": {"psnr": float(base[s][j] + add + rng.normal(0, noise)),
                                            "ssim": 0.8, "nmse": 0.01},
                                  "zero_filled": {"psnr": 20.0, "ssim": 0.5, "nmse": 0.1}}
                        for j in range(volumes)}}
                    for s in sites
                },
                "val_psnr": {s: [20.0, 21.0, 22.0, 22.5, 22.6] for s in sites},
                "communication": None, "timing": None,
            }  # fmt: skip
            (folder / "runs" / f"{algorithm}-s{seed}.json").write_text(json.dumps(record))
    write_report(folder, log=lambda _: None)
    return folder


def _fedavg_mean_psnr(folder: Path) -> dict:
    rows = {(r["method"], r["site"], r["metric"]): r for r in csv.DictReader(open(folder / "comparison.csv"))}
    return rows[("FedAvg", "mean", "psnr")]


def test_report_calls_a_difference_that_is_consistent_only_within_seeds_not_detectable(tmp_path):
    folder = _hand_study(tmp_path / "within", {0: +0.8, 1: -0.5, 2: +0.6})
    cell = _fedavg_mean_psnr(folder)
    assert cell["verdict"] == "no detectable difference" and float(cell["p_value"]) > 0.05
    assert int(cell["paired_seeds"]) == 3 and int(cell["volume_pairs"]) == 72
    # the descriptive column: 72 pairs, a narrow interval that would have been called significant
    assert float(cell["volume_diff_half_width"]) < abs(float(cell["diff_vs_fedmri"]))
    claims = (folder / "claims.md").read_text()
    assert "0 better" in claims and "FedMRI is best on every site" in claims
    assert "| not detectable |" in claims


def test_report_detects_a_difference_that_is_consistent_across_seeds(tmp_path):
    folder = _hand_study(tmp_path / "across", {0: 0.50, 1: 0.55, 2: 0.45, 3: 0.52, 4: 0.48})
    cell = _fedavg_mean_psnr(folder)
    assert cell["verdict"] == "better" and float(cell["p_value"]) < 1e-4
    assert int(cell["paired_seeds"]) == 5
    assert "| does not hold |" in (folder / "claims.md").read_text()  # FedAvg beats FedMRI
    # the per-seed differences, each the mean over that seed's 24 volume pairs, in the pooled column
    runs = {k: json.loads((folder / "runs" / f"{k}.json").read_text()) for k in
            [f"{a}-s{s}" for a in ("fedmri", "fedavg") for s in range(5)]}  # fmt: skip
    expected = []
    for seed in range(5):
        a, b = runs[f"fedavg-s{seed}"]["sites"], runs[f"fedmri-s{seed}"]["sites"]
        diffs = [a[s]["volumes"][v]["model"]["psnr"] - b[s]["volumes"][v]["model"]["psnr"]
                 for s in ("a", "b") for v in a[s]["volumes"]]  # fmt: skip
        expected.append(f"{np.mean(diffs):+.2f}")
    assert ", ".join(expected) in (folder / "comparison.md").read_text()


def test_report_takes_rows_with_different_seed_counts_and_gives_one_seed_no_verdict(tmp_path):
    folder = _hand_study(tmp_path / "uneven", {0: 0.5, 1: 0.55, 2: 0.45})
    (folder / "runs" / "fedavg-s1.json").unlink()
    (folder / "runs" / "fedavg-s2.json").unlink()
    write_report(folder, log=lambda _: None)
    cell = _fedavg_mean_psnr(folder)
    assert int(cell["paired_seeds"]) == 1 and cell["verdict"] == "too few seeds" and cell["p_value"] == ""
    assert "no verdict (1 seed)" in (folder / "comparison.md").read_text()


def test_seeds_of_gives_the_named_variants_only_those_seeds(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, rounds=2)))
    args = ["--config", str(config), "--algorithms", "fedmri,fedavg,singleset", "--ablations", "contrastive",
            "--seeds", "3,5,7", "--results", str(tmp_path / "results")]  # fmt: skip
    resolved = plan.make_plan(compare.study_options([*args, "--seeds-of", "fedavg,singleset=7,3"]))
    runs = {row.label: row.runs for row in resolved.manifest.rows}
    assert runs["FedAvg"] == {"3": "fedavg-s3", "7": "fedavg-s7"} and list(runs["SingleSet"]) == ["3", "7"]
    assert list(runs["FedMRI"]) == ["3", "5", "7"]
    assert sorted(resolved.planned) == sorted(
        ["fedmri-s3", "fedmri-s5", "fedmri-s7", "fedmri-beta0-s3", "fedmri-beta0-s5", "fedmri-beta0-s7",
         "fedavg-s3", "fedavg-s7", "singleset-s3", "singleset-s7"]
    )  # fmt: skip
    assert "--seeds-of fedavg,singleset=7,3" in resolved.manifest.command
    for bad, message in [
        ("fedfoo=3", "--seeds-of: no variant fedfoo"),
        ("fedavg=4", "must be some of --seeds 3,5,7"),
        ("fedavg", "expected VARIANTS=SEEDS"),
        ("fedavg=", "must be some of --seeds"),
        ("fedavg=x", "--seeds-of: "),
        ("fedavg=3,3", "--seeds-of: expected distinct"),
    ]:
        with pytest.raises(plan.UserError, match=message):
            plan.make_plan(compare.study_options([*args, "--seeds-of", bad]))
    with pytest.raises(plan.UserError, match="twice"):
        plan.make_plan(compare.study_options([*args, "--seeds-of", "fedavg=3", "--seeds-of", "fedavg=5"]))
    no_seeds = [a for a in args if a not in ("--seeds", "3,5,7")]
    with pytest.raises(plan.UserError, match="--seeds first"):
        plan.make_plan(compare.study_options([*no_seeds, "--seeds-of", "fedavg=3"]))


def test_one_seed_gives_no_verdict_on_any_claim(tmp_path):
    # FedAvg keeps less than half of FedMRI's gain over zero-filled on every site (+7 dB against a
    # FedAvg 4 dB lower), which with two seeds reads "holds at a, b"; with one seed no claim has a verdict.
    one = (_hand_study(tmp_path / "one", {0: -4.0}) / "claims.md").read_text()
    two = (_hand_study(tmp_path / "two", {0: -4.0, 1: -4.1}) / "claims.md").read_text()
    nearly = [next(ln for ln in text.splitlines() if "nearly fails" in ln) for text in (one, two)]
    assert nearly[0].endswith("| no verdict (one seed) |") and nearly[1].endswith("| holds at a, b |")
    rows = [ln for ln in one.splitlines() if ln.startswith("| ") and "---" not in ln]
    verdicts = [ln.rsplit("|", 2)[1].strip() for ln in rows]
    assert verdicts[1:] and all("no verdict (one seed)" in v for v in verdicts[1:]), verdicts
