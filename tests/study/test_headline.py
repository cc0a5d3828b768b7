"""claims.md's "In short": the study in one paragraph, from hand-made raw files with known shifts, and
its block in the README and RESULTS.md."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from study.headline import headline_markdown, seed_list
from study.records import load_study
from study.report import write_report
from study.rows import rows_of
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "docs" / "results"))
import refresh_results  # noqa: E402

SITES = ["a", "b"]
ROWS = {  # label -> (algorithm, variant overrides, family, run name)
    "FedMRI": ("fedmri", [], "comparison", "fedmri"),
    "FedAvg": ("fedavg", [], "comparison", "fedavg"),
    "SingleSet": ("singleset", [], "comparison", "singleset"),
    "FedProx": ("fedprox", [], "comparison", "fedprox"),
    "without L_con (beta=0)": ("fedmri", ["fl.fedmri.beta=0"], "contrastive", "fedmri-beta0"),
    "share whole model": ("fedmri", ["fl.fedmri.share=whole"], "sharing", "fedmri-whole"),
}


def study(folder: Path, shifts: dict[str, list[float | None]]) -> Path:
    """A study whose rows score FedMRI's PSNR plus their shift of that seed on every test volume, with no
    noise (None: that seed's run has not finished); the zero-filled input scores 20 dB."""
    rng = np.random.default_rng(0)
    seeds = range(max(len(s) for s in shifts.values()))
    (folder / "runs").mkdir(parents=True)
    rows = [
        {"label": label, "families": [family], "algorithm": algorithm,
         "overrides": [f"fl.algorithm={algorithm}", *extra], "runs": {str(s): f"{name}-s{s}" for s in seeds}}
        for label, (algorithm, extra, family, name) in ROWS.items() if label in shifts
    ]  # fmt: skip
    manifest = {"command": "hand-made", "config": "none", "rounds": 3, "local_epochs": 1, "sites": SITES,
                "seeds": list(seeds), "ablations": ["contrastive", "sharing"], "rows": rows}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for seed in seeds:
        base = {s: rng.normal(27.0, 1.0, 4) for s in SITES}
        for label, (algorithm, extra, _, name) in ROWS.items():
            shift = shifts.get(label, [])[seed] if seed < len(shifts.get(label, [])) else None
            if shift is None:
                continue
            record = {
                "seed": seed, "algorithm": algorithm, "overrides": [f"fl.algorithm={algorithm}", *extra],
                "rounds": 3, "val_psnr": {s: [20.0, 21.0, 21.5] for s in SITES}, "communication": None,
                "timing": None,
                "sites": {s: {"best_round": 3, "volumes": {
                    f"v{j}": {"model": {"psnr": float(base[s][j] + shift), "ssim": 0.8, "nmse": 0.01},
                              "zero_filled": {"psnr": 20.0, "ssim": 0.5, "nmse": 0.1}}
                    for j in range(4)}} for s in SITES},
            }  # fmt: skip
            (folder / "runs" / f"{name}-s{seed}.json").write_text(json.dumps(record))
    return folder


def in_short(folder: Path) -> str:
    write_report(folder, log=lambda _: None)
    claims = (folder / "claims.md").read_text()
    assert claims.count("\n## In short\n") == 1
    return claims.split("\n## In short\n", 1)[1]


def test_the_paragraph_names_the_better_the_worse_and_the_level_methods_the_term_and_sharing(tmp_path):
    text = in_short(study(tmp_path / "study", {
        "FedMRI": [0, 0, 0], "SingleSet": [1.0, 1.1, 0.9], "FedAvg": [-0.5, -0.4, -0.6],
        "FedProx": [0.3, -0.3, 0.1], "without L_con (beta=0)": [0.8, 1.0, 0.7],
        "share whole model": [-2.0, -2.1, -1.9],
    }))  # fmt: skip
    assert text.startswith("\nOver seeds 0-2 (")
    assert "paired t-test over seeds at 5 %), FedAvg -0.50 ± 0.25 dB is worse than FedMRI; " in text
    assert (
        "; SingleSet +1.00 ± 0.25 dB is better; FedProx +0.03 ± 0.76 dB (p = 0.87) is not detectably " in text
    )
    # FedAvg − beta = 0: -1.3, -1.4, -1.3.
    assert (
        "different. The contrastive term costs FedMRI 0.83 ± 0.38 dB; sharing only the encoder beats sharing "
        "the whole model by 2.00 ± 0.25 dB with the term on both and by 1.33 ± 0.14 dB without it (FedAvg "
        "against FedMRI with beta = 0). "
    ) in text
    # best everywhere, the term: do not hold; FedAvg nearly fails: does not (6.5 of FedMRI's 7 dB).
    assert text.endswith(
        "Of the paper's 5 claims measured here (in PSNR where a claim is measured in PSNR and SSIM), 2 hold, "
        "both on what to share; 3 do not hold.\n"
    )
    assert "(5 seeds)" not in text and "(3 seeds)" not in text


def test_rows_with_fewer_seeds_give_their_count_and_one_seed_no_verdict(tmp_path):
    text = in_short(study(tmp_path / "study", {
        "FedMRI": [0, 0, 0, 0, 0], "SingleSet": [1.0, 1.1, 0.9, 1.0, 1.0], "FedAvg": [-0.5, -0.4, -0.6],
        "FedProx": [0.3], "without L_con (beta=0)": [-0.8, -0.9, -0.7, None, None],
    }))  # fmt: skip
    assert text.startswith("\nOver 1 to 5 seeds (each comparison over the seeds both of its rows have; mean ")
    assert (
        "FedAvg -0.50 ± 0.25 dB (3 seeds) is worse than FedMRI; SingleSet +1.00 ± 0.09 dB (5 seeds) is "
        in text
    )
    assert "; FedProx +0.30 dB (1 seed) has one seed in common with FedMRI (no verdict yet)." in text
    # beta = 0 is behind FedMRI; no whole-model row; FedAvg − beta = 0 is +0.30, +0.50, +0.10.
    assert (
        "The contrastive term gives FedMRI 0.80 ± 0.25 dB (3 seeds); sharing only the encoder is not "
        "detectably different from sharing the whole model (FedAvg − FedMRI beta = 0 +0.30 ± 0.50 dB, "
        "p = 0.12, 3 seeds) without the contrastive term on both (FedAvg against FedMRI with beta = 0). "
    ) in text
    assert text.endswith(
        "Of the paper's 4 claims measured here (in PSNR where a claim is measured in PSNR and SSIM), "
        '1 holds: "Removing the contrastive term is worse"; 2 do not hold and 1 is not detectable.\n'
    )


def test_all_level_and_no_row_beside_fedmri(tmp_path):
    text = in_short(study(tmp_path / "level", {"FedMRI": [0, 0, 0], "FedAvg": [0.2, -0.2, 0.05]}))
    assert (
        "no method is worse than FedMRI; no method is better; FedAvg +0.02 ± 0.50 dB (p = 0.9) is not "
        in text
    )
    assert (
        "Of the paper's 2 claims measured here (in PSNR where a claim is measured in PSNR and SSIM), none "
        in text
    )
    text = in_short(study(tmp_path / "one", {"FedMRI": [0], "FedAvg": [0.3]}))
    assert "5 %), FedAvg +0.30 dB has one seed in common with FedMRI (no verdict yet). Of the paper's" in text
    folder = study(tmp_path / "alone", {"FedMRI": [0, 0]})
    manifest, runs = load_study(folder)
    assert headline_markdown(rows_of(manifest, runs), []).startswith("Over seeds 0 and 1 (")


def test_without_a_fedmri_run_there_is_no_paragraph_and_no_crash(tmp_path):
    folder = study(
        tmp_path / "study", {"FedMRI": [None, None], "FedAvg": [0.1, 0.2], "SingleSet": [1.0, 1.2]}
    )
    write_report(folder, log=lambda _: None)
    assert not (folder / "claims.md").exists()
    manifest, runs = load_study(folder)
    assert headline_markdown(rows_of(manifest, runs), []) == (
        "No run of FedMRI has finished yet: nothing is compared with it.\n"
    )
    assert refresh_results.blocks(folder)["headline"] == "No run of FedMRI has finished yet.\n"


@pytest.mark.parametrize(
    ("seeds", "words"),
    [([0, 1, 2], "seeds 0-2"), ([0, 1, 2, 4], "seeds 0-2 and 4"), ([3], "seed 3"), ([2, 0], "seeds 0 and 2"),
     ([0, 1, 3, 4, 5], "seeds 0, 1 and 3-5")],
)  # fmt: skip
def test_seed_lists(seeds, words):
    assert seed_list(seeds) == words


def test_refresh_puts_the_paragraph_between_its_markers_and_needs_them(tmp_path, monkeypatch):
    folder = study(tmp_path / "study", {"FedMRI": [0, 0, 0], "SingleSet": [1.0, 1.1, 0.9]})
    write_report(folder, log=lambda _: None)
    found = refresh_results.blocks(folder)
    assert (
        found["headline"].startswith("Over seeds 0-2 (")
        and "SingleSet +1.00 ± 0.25 dB is better" in found["headline"]
    )
    assert "In short" not in found["claims"] and found["claims"].rstrip().endswith("|")
    results, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    others = "".join(f"<!-- study:{b} -->\nSTALE\n<!-- /study:{b} -->\n" for b in found if b != "headline")
    results.write_text(others + "<!-- study:headline -->\nSTALE\n<!-- /study:headline -->\n")
    readme.write_text(
        "Timing by hand.\n<!-- study:headline -->\nSTALE\n<!-- /study:headline -->\nMore prose.\n"
    )
    monkeypatch.setattr(refresh_results, "TARGETS", (results, readme))
    refresh_results.main([str(folder)])
    assert "STALE" not in results.read_text() and "STALE" not in readme.read_text()
    assert readme.read_text() == (
        "Timing by hand.\n<!-- study:headline -->\n\n"
        + found["headline"].strip()
        + "\n\n<!-- /study:headline -->"
        "\nMore prose.\n"
    )
    assert "Over seeds 0-2" in results.read_text().split("<!-- study:headline -->")[1]
    results.write_text(others)
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="study:headline"):
        refresh_results.main([str(folder)])


def test_the_readme_carries_the_studys_own_paragraph():
    study_folder = ROOT / "docs" / "results" / "study"
    body = refresh_results.blocks(study_folder)["headline"]
    for name in ("README.md", "RESULTS.md"):
        text = (ROOT / name).read_text()
        assert "<!-- study:headline -->" in text and "<!-- /study:headline -->" in text, name
        inside = text.split("<!-- study:headline -->", 1)[1].split("<!-- /study:headline -->", 1)[0]
        assert inside.strip() == body.strip(), f"{name}: the study's paragraph is stale"
