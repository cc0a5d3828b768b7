"""The regime map: each claim of the paper in each regime, from hand-made raw files of two studies."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import compare
from study import regime_map

SITES = ["a", "b"]
ROWS = {  # label -> (algorithm, variant overrides, run name)
    "FedMRI": ("fedmri", [], "fedmri"),
    "FedAvg": ("fedavg", [], "fedavg"),
    "SingleSet": ("singleset", [], "singleset"),
    "Centralized": ("centralized", [], "centralized"),
    "without L_con (beta=0)": ("fedmri", ["fl.fedmri.beta=0"], "fedmri-beta0"),
}


def study(
    folder: Path, shifts: dict[str, list[float]], volumes: int = 6, input_shift: float | None = None
) -> None:
    """A results folder where each row's PSNR is FedMRI's plus its shift of that seed (plus noise); the
    zero-filled input scores 20 dB, or FedMRI's PSNR plus ``input_shift`` on every volume."""
    rng = np.random.default_rng(3)
    seeds = range(len(shifts["FedMRI"]))

    def zero_filled(fedmri: float) -> float:
        return 20.0 if input_shift is None else float(fedmri + input_shift)

    (folder / "runs").mkdir(parents=True)
    rows = [
        {"label": label, "families": ["contrastive"] if "beta=0" in label else ["comparison"],
         "algorithm": algorithm, "overrides": [f"fl.algorithm={algorithm}", *extra],
         "runs": {str(s): f"{name}-s{s}" for s in seeds}}
        for label, (algorithm, extra, name) in ROWS.items() if label in shifts
    ]  # fmt: skip
    manifest = {"command": "hand-made", "config": "none", "rounds": 3, "local_epochs": 1, "sites": SITES,
                "seeds": list(seeds), "ablations": ["contrastive"], "rows": rows}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for seed in seeds:
        base = {s: rng.normal(27.0, 1.0, volumes) for s in SITES}
        for label, (algorithm, extra, name) in ROWS.items():
            if label not in shifts:
                continue
            shift = shifts[label][seed]
            record = {
                "seed": seed, "algorithm": algorithm, "overrides": [f"fl.algorithm={algorithm}", *extra],
                "rounds": 3, "val_psnr": {s: [20.0, 21.0, 21.5] for s in SITES}, "communication": None,
                "timing": None,
                "sites": {s: {"best_round": 3, "volumes": {
                    f"v{j}": {"model": {"psnr": float(base[s][j] + shift + rng.normal(0, 0.01)), "ssim": 0.8,
                                        "nmse": 0.01},
                              "zero_filled": {"psnr": zero_filled(base[s][j]), "ssim": 0.5, "nmse": 0.1}}
                    for j in range(volumes)}} for s in SITES},
            }  # fmt: skip
            (folder / "runs" / f"{name}-s{seed}.json").write_text(json.dumps(record))


@pytest.fixture
def two_regimes(tmp_path):
    # Regime "rich": FedMRI leads FedAvg by ~0.5 dB in every seed, and its term helps.
    study(tmp_path / "rich", {
        "FedMRI": [0, 0, 0], "FedAvg": [-0.5, -0.45, -0.55], "SingleSet": [-1.0, -1.1, -0.9],
        "Centralized": [0.3, 0.2, 0.4], "without L_con (beta=0)": [-0.8, -0.7, -0.9],
    })  # fmt: skip
    # Regime "poor": FedAvg leads; SingleSet is level with Centralized only in the mean, not seed by seed;
    # and FedMRI is 0.4 dB below its zero-filled input on every volume.
    poor = {"FedMRI": [0, 0, 0], "FedAvg": [0.6, 0.5, 0.55], "SingleSet": [0.9, 1.5, 0.2],
            "Centralized": [1.4, 0.9, 1.2]}  # fmt: skip
    study(tmp_path / "poor", poor, input_shift=0.4)
    spec = {"regimes": [
        {"key": "rich", "title": "sites gain from each other", "folder": "rich", "setting": "hand-made."},
        {"key": "poor", "title": "sites learn alone", "folder": "poor", "setting": "hand-made."},
    ]}  # fmt: skip
    (tmp_path / "regimes.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path


def test_each_claim_gets_its_seed_level_verdict_in_each_regime(two_regimes):
    assert compare.main(["--map", str(two_regimes)]) == 0
    data = json.loads((two_regimes / "map.json").read_text())
    claims = data["claims"]
    fedavg = claims["FedMRI beats FedAvg"]
    assert fedavg["rich"]["verdict"] == "holds" and fedavg["poor"]["verdict"] == "does not hold"
    assert fedavg["rich"]["difference"] == pytest.approx(0.5, abs=0.02)
    assert sorted(fedavg["rich"]["per_seed"]) == ["0", "1", "2"]
    term = claims["Removing the contrastive term is worse (FedMRI beats FedMRI with beta = 0)"]
    assert term["rich"]["verdict"] == "holds" and term["poor"] is None  # not run there
    premise = claims["Collaboration pays: Centralized beats SingleSet (the paper's premise)"]
    assert premise["rich"]["verdict"] == "holds"
    assert premise["poor"]["verdict"] == "not detectable"  # +0.5, -0.6, +1.0 over three seeds
    learns = claims[regime_map.CLAIMS[0].text]
    assert learns["rich"]["verdict"] == "holds"
    assert learns["rich"]["difference"] == pytest.approx(7.0, abs=1.0)  # ~27 dB against 20 dB
    assert learns["poor"]["verdict"] == "does not hold"
    assert learns["poor"]["difference"] == pytest.approx(-0.4, abs=0.01)
    text = (two_regimes / "map.md").read_text()
    assert "| FedMRI beats FedAvg | **holds**: +0.50" in text and "not run" in text
    assert (two_regimes / "figures" / "map.png").stat().st_size > 0
    versus = data["versus_fedmri"]["poor"]
    assert set(versus) == {"FedAvg", "SingleSet", "Centralized"}


def test_the_papers_claims_are_corrected_for_testing_many_at_once(two_regimes):
    assert compare.main(["--map", str(two_regimes)]) == 0
    claims = json.loads((two_regimes / "map.json").read_text())["claims"]
    premises = {c.text for c in regime_map.CLAIMS if c.premise}
    tested = {
        (text, key): cell
        for text, cells in claims.items() if text not in premises
        for key, cell in cells.items() if cell is not None
    }  # fmt: skip
    # rich: FedMRI vs SingleSet, FedAvg, beta = 0, and beta = 0 vs FedAvg; poor: vs SingleSet, FedAvg
    assert len(tested) == 6
    ordered = sorted(tested.values(), key=lambda c: c["p_value"])
    m, running = len(ordered), 0.0
    for j, cell in enumerate(ordered):  # Holm by hand: max over the smaller ones of (m - j) p, capped
        running = max(running, min(1.0, (m - j) * cell["p_value"]))
        assert cell["holm_p_value"] == pytest.approx(running, rel=1e-9)
        q = min(min(1.0, m * c["p_value"] / (k + 1)) for k, c in enumerate(ordered) if k >= j)
        assert cell["bh_p_value"] == pytest.approx(q, rel=1e-9)
    for text in premises:  # conditions of the setting, not claims: not in the family
        assert all(cell is None or "holm_p_value" not in cell for cell in claims[text].values())
    text = (two_regimes / "map.md").read_text()
    assert "## Many verdicts at once" in text and "tests 6 cells" in text
    decided = [c for c in tested.values() if c["p_value"] < 0.05]
    holm_kept = sum(c["holm_p_value"] < 0.05 for c in decided)
    assert f"{len(decided)} verdicts; {holm_kept} stand after Holm's" in text


def test_the_map_pools_the_terms_diagnostics_where_the_raw_files_keep_them(two_regimes):
    # In "rich", FedMRI's seed 0 kept its term: on site a L_con sat on its ceiling 1/2 in rounds 2 and 3,
    # on site b in round 3 only (round 1: no term); its other seeds did not keep it.
    path = two_regimes / "rich" / "runs" / "fedmri-s0.json"
    record = json.loads(path.read_text())
    record["term"] = {
        "a": {"con_l_con": [None, 0.5, 0.4999], "con_outside": [None, 0.9, 1.0],
              "penalty": [None, 50.0, 49.99], "loss_rec": [None, 0.2, 0.1],
              "con_dist": [None, 1e-3, 3e-3], "con_spread": [None, 0.0, 2e-6]},
        "b": {"con_l_con": [None, 0.1, 0.5], "con_outside": [None, 0.2, 0.95], "penalty": [None, 10.0, 50.0],
              "loss_rec": [None, 0.3, 0.1], "con_dist": [None, 1e-6, 2e-3], "con_spread": [None, 5e-4, 1e-6]},
    }  # fmt: skip
    path.write_text(json.dumps(record))
    assert compare.main(["--map", str(two_regimes)]) == 0
    data = json.loads((two_regimes / "map.json").read_text())
    rich = data["term"]["rich"]["FedMRI"]
    assert rich["runs"] == 1 and rich["pairs"] == 4 and rich["on_ceiling"] == pytest.approx(0.75)
    assert rich["outside_median"] == pytest.approx(0.925) and rich["penalty_median"] == pytest.approx(49.995)
    assert rich["loss_rec_median"] == pytest.approx(0.15)
    # on the ceiling (a2, a3, b3): far from the server's encoder, the negatives collapsed; off it (b2)
    assert rich["dist_on_median"] == pytest.approx(2e-3) and rich["spread_on_median"] == pytest.approx(1e-6)
    assert rich["dist_off_median"] == pytest.approx(1e-6) and rich["spread_off_median"] == pytest.approx(5e-4)
    assert data["term"]["poor"]["FedMRI"] is None  # no raw file there kept it
    text = (two_regimes / "map.md").read_text()
    row = "| sites gain from each other | FedMRI | 1 | 4 | 75% | 92.5% | 50 | 0.15 | 0.002 / 1e-06 | 1e-06 / 0.0005 |"  # noqa: E501
    assert row in text


def test_a_regime_whose_study_has_not_started_reads_not_run(two_regimes):
    spec = yaml.safe_load((two_regimes / "regimes.yaml").read_text())
    spec["regimes"].append({"key": "later", "title": "to come", "folder": "later", "setting": "planned."})
    (two_regimes / "regimes.yaml").write_text(yaml.safe_dump(spec))
    (two_regimes / "later").mkdir()  # its run script may be there; no manifest.json yet
    assert compare.main(["--map", str(two_regimes)]) == 0
    data = json.loads((two_regimes / "map.json").read_text())
    assert all(claim["later"] is None for claim in data["claims"].values())
    assert data["claims"]["FedMRI beats FedAvg"]["rich"]["verdict"] == "holds"  # the others as before
    lines = (two_regimes / "map.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| claim"))
    assert header.endswith("| to come |")
    assert "**to come** (`later`): planned. Seeds per row: none yet." in (two_regimes / "map.md").read_text()
    assert "Over the map's 2 regimes with runs so far (of 3)," in (two_regimes / "map.md").read_text()


def test_report_of_a_map_folder_rebuilds_every_regimes_tables_then_the_map(two_regimes, capsys):
    """compare.py --report on a map folder: each started regime's comparison tables (as --report on that
    folder alone writes them) and the map (as --map writes it); a regime not started is left alone."""
    spec = yaml.safe_load((two_regimes / "regimes.yaml").read_text())
    spec["regimes"].append({"key": "later", "title": "to come", "folder": "later", "setting": "planned."})
    (two_regimes / "regimes.yaml").write_text(yaml.safe_dump(spec))
    (two_regimes / "later").mkdir()
    assert compare.main(["--report", str(two_regimes)]) == 0
    written = {
        name: (two_regimes / name).read_bytes() for name in ("rich/comparison.md", "poor/claims.md", "map.md")
    }
    assert list((two_regimes / "later").iterdir()) == []
    for name in written:
        (two_regimes / name).unlink()
    assert compare.main(["--report", str(two_regimes / "rich")]) == 0
    assert compare.main(["--report", str(two_regimes / "poor")]) == 0
    assert compare.main(["--map", str(two_regimes)]) == 0
    assert {name: (two_regimes / name).read_bytes() for name in written} == written
    capsys.readouterr()
    assert compare.main(["--report", str(two_regimes), "--jobs", "2"]) == 2
    assert "--report rebuilds" in capsys.readouterr().err


def test_the_committed_map_comes_from_the_committed_raw_files(tmp_path):
    """map.md and map.json as compare.py --map writes them from the raw files in the repository, and
    RESULTS.md's claims x regimes table as map.md has it."""
    import shutil
    import sys

    from tests.conftest import ROOT

    source = ROOT / "docs" / "results" / "map"
    copy = tmp_path / "docs" / "map"
    copy.mkdir(parents=True)
    shutil.copy(source / "regimes.yaml", copy / "regimes.yaml")
    for regime in regime_map.read_map(source).regimes:
        link = copy / regime.folder
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((source / regime.folder).resolve(), target_is_directory=True)
    regime_map.write_map(copy, log=lambda _: None)
    for name in ("map.md", "map.json"):
        assert (copy / name).read_text() == (source / name).read_text(), f"docs/results/map/{name} is stale"
    sys.path.insert(0, str(ROOT / "docs" / "results"))
    import refresh_results

    texts = {name: (ROOT / name).read_text() for name in ("RESULTS.md", "README.md")}
    for name, body in refresh_results.map_blocks(source).items():
        start, end = f"<!-- map:{name} -->", f"<!-- /map:{name} -->"
        holders = [file for file, text in texts.items() if start in text and end in text]
        assert holders, f"neither RESULTS.md nor README.md has {start} markers"
        for file in holders:
            inside = texts[file].split(start, 1)[1].split(end, 1)[0]
            assert inside.strip() == body.strip(), f"{file}: {start} is stale"
    assert "<!-- map:headline -->" in texts["README.md"], "the README's summary is the map's own"


def test_bad_map_files_are_one_line_errors(two_regimes, capsys):
    (two_regimes / "regimes.yaml").write_text("regimes: [{key: 'a b', title: x, folder: rich}]\n")
    assert compare.main(["--map", str(two_regimes)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "regimes.yaml" in err[0] and "regimes[0].key" in err[0], err
    (two_regimes / "regimes.yaml").write_text("regimes: [{key: a, title: x, folder: missing}]\n")
    assert compare.main(["--map", str(two_regimes)]) == 2
    assert "missing" in capsys.readouterr().err
    assert compare.main(["--map", str(two_regimes), "--jobs", "2"]) == 2
    assert "drop jobs" in capsys.readouterr().err


def test_the_map_reads_the_rows_it_needs_by_algorithm_and_overrides():
    assert set(regime_map.METHODS) >= {"FedMRI beta = 0", "FedAvg", "SingleSet", "Centralized"}
    assert regime_map.METHODS["FedMRI beta = 0"] == ("fedmri", ("fl.fedmri.beta=0",))


def test_the_maps_sentences_say_what_its_table_says(two_regimes):
    assert compare.main(["--map", str(two_regimes)]) == 0
    text = (two_regimes / "map.md").read_text()
    short = text.split("## In short\n", 1)[1].split("\n## ", 1)[0]
    # rich: FedMRI ahead of SingleSet (+1.0), FedAvg (+0.5), beta = 0 (+0.8); poor: behind FedAvg (-0.55),
    # level with SingleSet (-0.9, -1.5, -0.2: not detectable), 0.4 dB below its own input
    assert (
        "ahead of another row in 3 comparisons" in short
        and "behind in 1 and not detectably different in 1" in short
    )
    assert "zero-filled input in *sites learn alone*: -0.40" in short
    says = text.split("## What the map says\n", 1)[1].split("\n## ", 1)[0]
    ahead = next(line for line in says.splitlines() if line.startswith("- **FedMRI is ahead**"))
    assert "*sites gain from each other*" in ahead and "*sites learn alone*" not in ahead
    assert "SingleSet +1.00" in ahead and "FedAvg +0.50" in ahead and "FedMRI beta = 0 +0.80" in ahead
    behind = next(line for line in says.splitlines() if line.startswith("- **FedMRI is behind**"))
    assert behind.count("dB") == 1 and "in *sites learn alone*, of FedAvg -0.55" in behind
    level = next(line for line in says.splitlines() if line.startswith("- **Not detectably different"))
    assert "*sites learn alone*: SingleSet -0.8" in level
    reverse = next(line for line in says.splitlines() if "reverse between regimes" in line)
    assert reverse.endswith(
        ": 1: FedMRI beats FedAvg."
    )  # holds in rich, fails in poor; SingleSet does not fail
    premise = next(line for line in says.splitlines() if line.startswith("- **Condition: Centralized"))
    assert (
        "holds in *sites gain from each other*" in premise
        and "not detectable in *sites learn alone*" in premise
    )


def test_the_maps_sentences_say_so_when_fedmri_is_ahead_nowhere(two_regimes):
    spec = yaml.safe_load((two_regimes / "regimes.yaml").read_text())
    spec["regimes"] = spec["regimes"][1:]  # "sites learn alone" only
    (two_regimes / "regimes.yaml").write_text(yaml.safe_dump(spec))
    assert compare.main(["--map", str(two_regimes)]) == 0
    text = (two_regimes / "map.md").read_text()
    assert "**FedMRI is ahead of no row in any regime tried** (1 regimes)" in text
    assert "ahead of another row in 0 comparisons;" in text
    assert "**No verdict reverses between regimes**" in text


def test_each_seeds_mean_psnr_is_the_mean_of_its_raw_files(two_regimes):
    assert compare.main(["--map", str(two_regimes)]) == 0
    text = (two_regimes / "map.md").read_text()
    section = text.split("### sites learn alone\n", 1)[1].strip().split("\n\n", 1)[0]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()[2:]]
    rows = {name: values for name, *values in cells}
    assert set(rows) == {"FedMRI", "FedAvg", "SingleSet", "Centralized", "zero-filled input"}
    for seed in range(3):
        record = json.loads((two_regimes / "poor" / "runs" / f"fedavg-s{seed}.json").read_text())
        sites = record["sites"].values()
        mean = np.mean([np.mean([v["model"]["psnr"] for v in s["volumes"].values()]) for s in sites])
        assert float(rows["FedAvg"][seed]) == pytest.approx(mean, abs=0.006)
        fedmri = json.loads((two_regimes / "poor" / "runs" / f"fedmri-s{seed}.json").read_text())["sites"]
        zero = np.mean(
            [np.mean([v["zero_filled"]["psnr"] for v in s["volumes"].values()]) for s in fedmri.values()]
        )
        assert float(rows["zero-filled input"][seed]) == pytest.approx(zero, abs=0.006)


def test_refresh_results_writes_each_map_block_wherever_its_markers_are(two_regimes, tmp_path, monkeypatch):
    import sys

    from tests.conftest import ROOT

    assert compare.main(["--map", str(two_regimes)]) == 0
    sys.path.insert(0, str(ROOT / "docs" / "results"))
    import refresh_results

    name = two_regimes.name
    blocks = refresh_results.map_blocks(two_regimes)
    results, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    results.write_text(
        "".join(f"<!-- {name}:{b} -->\nSTALE\n<!-- /{name}:{b} -->\n" for b in blocks if b != "headline")
    )
    readme.write_text(f"intro\n<!-- {name}:headline -->\nSTALE\n<!-- /{name}:headline -->\nrest\n")
    monkeypatch.setattr(refresh_results, "TARGETS", (results, readme))
    refresh_results.main([str(two_regimes)])
    assert "STALE" not in results.read_text() and "STALE" not in readme.read_text()
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("rest\n")
    assert (
        blocks["headline"].strip() in readme.read_text() and blocks["findings"].strip() in results.read_text()
    )
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="headline"):
        refresh_results.main([str(two_regimes)])


def with_reset_column(folder: Path, controls: list[dict]) -> None:
    """A third column trained on "rich"'s data (the same rows, so the same test volumes and inputs) with
    its own shifts, and ``controls`` across the columns."""
    study(folder / "rich-reset", {
        "FedMRI": [0.1, 0.1, 0.1], "FedAvg": [-0.2, -0.1, -0.3], "SingleSet": [-1.0, -1.1, -0.9],
        "Centralized": [0.3, 0.2, 0.4], "without L_con (beta=0)": [0.05, 0.0, 0.1],
    })  # fmt: skip
    spec = yaml.safe_load((folder / "regimes.yaml").read_text())
    spec["regimes"].append({"key": "rich-reset", "title": "rich, reset", "folder": "rich-reset"})
    spec["controls"] = controls
    (folder / "regimes.yaml").write_text(yaml.safe_dump(spec))


def test_controls_compare_rows_of_two_columns_trained_on_the_same_data(two_regimes):
    with_reset_column(two_regimes, [
        {"text": "term vs reset", "first": {"regime": "rich", "row": "FedMRI"},
         "second": {"regime": "rich-reset", "row": "FedMRI beta = 0"}},
        {"text": "reset on FedAvg", "first": {"regime": "rich-reset", "row": "FedAvg"},
         "second": {"regime": "rich", "row": "FedAvg"}},
        {"text": "not yet", "first": {"regime": "rich", "row": "FedPer (GD-GD)"},
         "second": {"regime": "rich-reset", "row": "FedAvg"}},
    ])  # fmt: skip
    assert compare.main(["--map", str(two_regimes)]) == 0
    controls = json.loads((two_regimes / "map.json").read_text())["controls"]
    term = controls[0]["result"]  # FedMRI (shift 0) - beta = 0 with reset (0.05, 0.0, 0.1)
    assert term["difference"] == pytest.approx(-0.05, abs=0.02) and term["verdict"] == "not detectable"
    assert sorted(term["per_seed"]) == ["0", "1", "2"]
    fedavg = controls[1]["result"]  # (-0.2, -0.1, -0.3) - (-0.5, -0.45, -0.55): +0.3, +0.35, +0.25
    assert fedavg["difference"] == pytest.approx(0.30, abs=0.02) and fedavg["verdict"] == "first ahead"
    assert controls[2]["result"] is None  # no FedPer row
    text = (two_regimes / "map.md").read_text()
    section = text.split("## Across columns\n", 1)[1].split("\n## ", 1)[0]
    assert "| reset on FedAvg | FedAvg (`rich-reset`) | FedAvg (`rich`) | +0.30" in section
    assert "| not yet |" in section and "| not run |" in section
    says = text.split("## What the map says\n", 1)[1].split("\n## ", 1)[0]
    line = next(line for line in says.splitlines() if line.startswith("- **Controls across columns**"))
    assert "term vs reset: not detectable, -0.05" in line and "reset on FedAvg: first ahead, +0.30" in line
    assert "not yet" not in line  # no result yet: left out of the sentence


def test_a_control_between_columns_on_different_data_or_unknown_names_is_a_one_line_error(
    two_regimes, capsys
):
    with_reset_column(two_regimes, [{"text": "apples and pears", "first": {"regime": "rich", "row": "FedMRI"},
                                     "second": {"regime": "poor", "row": "FedAvg"}}])  # fmt: skip
    assert compare.main(["--map", str(two_regimes)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "regimes.yaml" in err[0] and "not trained on the same data" in err[0], err
    assert not (two_regimes / "map.md").exists()  # nothing written
    wrong = [
        ("first", {"regime": "nowhere", "row": "FedMRI"}, "controls[0].first.regime"),
        ("second", {"regime": "rich", "row": "FedNothing"}, "controls[0].second.row"),
    ]
    for side, bad, word in wrong:
        control = {
            "text": "x",
            "first": {"regime": "rich", "row": "FedMRI"},
            "second": {"regime": "rich", "row": "FedAvg"},
        }
        control[side] = bad
        spec = yaml.safe_load((two_regimes / "regimes.yaml").read_text())
        spec["controls"] = [control]
        (two_regimes / "regimes.yaml").write_text(yaml.safe_dump(spec))
        assert compare.main(["--map", str(two_regimes)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0], err


def test_a_regime_title_or_control_text_must_be_one_line(two_regimes, capsys):
    """They go into table cells and the sentences; a line break would end a row or start a section."""
    spec = yaml.safe_load((two_regimes / "regimes.yaml").read_text())
    spec["regimes"][0]["title"] = "sites gain\n## from each other"
    (two_regimes / "regimes.yaml").write_text(yaml.safe_dump(spec))
    assert compare.main(["--map", str(two_regimes)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "regimes[0].title" in err[0] and "one line" in err[0], err
    spec["regimes"][0]["title"] = "sites gain from each other"
    spec["controls"] = [{"text": "two\nlines", "first": {"regime": "rich", "row": "FedMRI"},
                         "second": {"regime": "rich", "row": "FedAvg"}}]  # fmt: skip
    (two_regimes / "regimes.yaml").write_text(yaml.safe_dump(spec))
    assert compare.main(["--map", str(two_regimes)]) == 2
    assert "controls[0].text" in capsys.readouterr().err
