"""study.latent and latent.py: site separability on known distributions, bottleneck features of a tiny
trained run, the summary, the figure and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import latent
from study import latent as library
from tests.conftest import tiny_config_dict
from utils.errors import UserError

SITES = ("fastmri", "brats")
TEST_SLICES_PER_SITE = 3  # tiny_config_dict: 1 test subject x 1 contrast x 3 slices per subject


# -- separability on synthetic data -----------------------------------------------------------------
def test_well_separated_clusters_are_told_apart_almost_always():
    rng = np.random.default_rng(0)
    # 4 unit-variance clusters in 16-D, centres 8 apart along orthogonal axes (11.3 standard deviations
    # between any two): a linear classifier errs with probability below 1e-8 per point.
    centres = 8.0 * np.eye(16)[:4]
    features = np.concatenate([c + rng.standard_normal((40, 16)) for c in centres])
    labels = np.repeat(["a", "b", "c", "d"], 40)
    result = library.site_separability(features, labels, seed=0)
    assert result["accuracy"] >= 0.99
    assert result["chance"] == 0.25 and result["sites"] == 4 and result["samples"] == 160
    assert result["folds"] == 5 and len(result["fold_accuracies"]) == 5


def test_identical_distributions_give_chance_accuracy():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((400, 16))  # the same distribution for every label
    labels = np.tile(["a", "b", "c", "d"], 100)
    result = library.site_separability(features, labels, seed=0)
    assert result["chance"] == 0.25
    assert abs(result["accuracy"] - 0.25) < 0.08, result


def test_overlapping_gaussians_give_the_bayes_accuracy():
    # N(-1, 1) against N(+1, 1): the best possible rule (the sign) is right with probability
    # Phi(1) = 0.8413, and a logistic regression on 4000 points learns that rule.
    rng = np.random.default_rng(2)
    features = np.concatenate([rng.normal(-1, 1, (2000, 1)), rng.normal(1, 1, (2000, 1))])
    labels = np.repeat(["a", "b"], 2000)
    result = library.site_separability(features, labels, seed=3)
    assert result["accuracy"] == pytest.approx(0.8413, abs=0.02)
    assert result["chance"] == 0.5


def test_unbalanced_sites_have_the_majority_share_as_chance_and_fewer_folds_when_small():
    rng = np.random.default_rng(3)
    labels = np.array(["a"] * 12 + ["b"] * 5 + ["c"] * 3)
    result = library.site_separability(rng.standard_normal((20, 4)), labels, seed=0, folds=5)
    assert result["chance"] == pytest.approx(0.6)
    assert result["folds"] == 3  # the smallest site has 3 samples
    with pytest.raises(ValueError, match="at least 2 sites"):
        library.site_separability(rng.standard_normal((5, 4)), ["a"] * 5)


def test_tsne_is_deterministic_for_a_seed_and_keeps_separated_clusters_apart():
    rng = np.random.default_rng(4)
    features = np.concatenate([rng.standard_normal((20, 8)), 10 + rng.standard_normal((20, 8))])
    coords = library.embed_tsne(features, seed=0)
    assert coords.shape == (40, 2)
    assert np.array_equal(coords, library.embed_tsne(features, seed=0))
    # Every point is nearer its own cluster's centre than the other one's.
    centres = np.stack([coords[:20].mean(0), coords[20:].mean(0)])
    nearest = np.linalg.norm(coords[:, None] - centres[None], axis=-1).argmin(1)
    assert nearest.tolist() == [0] * 20 + [1] * 20


def test_a_dual_domain_model_is_refused_naming_its_kind(tiny_config):
    config = tiny_config()
    config.model.kind = "dual_domain"
    with pytest.raises(UserError, match="model.kind dual_domain"):
        library.bottleneck_features(config, {}, {})


# -- a tiny trained run -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-site FedMRI federation trained for one round by train.py, in this process."""
    import train

    tmp = tmp_path_factory.mktemp("latent")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp, rounds=1)))
    assert train.main(["--config", str(config)]) == 0
    return tmp / "runs" / "tiny"


@pytest.fixture(scope="module")
def trained(run_dir):
    from assembly.evaluation import build_sites, load_run

    models = load_run(run_dir)
    return models, build_sites(models.config)


@pytest.mark.slow
def test_features_are_one_pooled_bottleneck_per_test_slice(trained):
    models, sites = trained
    config = models.config
    features, labels, volumes = library.bottleneck_features(config, models.models, sites)
    channels = config.model.chans * 2**config.model.num_pool_layers
    assert channels == 16  # 4 channels doubled by each of the 2 pools
    assert features.shape == (2 * TEST_SLICES_PER_SITE, channels)
    assert sum(len(sites[s].datasets["test"]) for s in SITES) == 2 * TEST_SLICES_PER_SITE
    assert labels.tolist() == [s for s in SITES for _ in range(TEST_SLICES_PER_SITE)]
    assert len(volumes) == len(features) and np.isfinite(features).all()
    # The same numbers as the bottleneck the ReconModule computes in training, averaged over space.
    from assembly.evaluation import new_module

    for site in SITES:
        module = new_module(config, models.models[site]).eval()
        batches = list(sites[site].test_dataloader())
        with torch.no_grad():
            expected = torch.cat([module.predict(b)[1].mean(dim=(-2, -1)) for b in batches])
        assert np.allclose(features[labels == site], expected.double().numpy(), atol=1e-6)
        assert volumes[labels.tolist().index(site)] == batches[0]["volume"][0]


@pytest.mark.slow
def test_each_site_is_encoded_by_its_own_model(trained):
    models, sites = trained
    before, labels, _ = library.bottleneck_features(models.config, models.models, sites)
    perturbed = dict(models.models)
    perturbed["brats"] = {name: t + 0.05 if name.startswith("encoder.") else t for name, t in
                          models.models["brats"].items()}  # fmt: skip
    after, _, _ = library.bottleneck_features(models.config, perturbed, sites)
    assert np.array_equal(after[labels == "fastmri"], before[labels == "fastmri"])
    assert not np.allclose(after[labels == "brats"], before[labels == "brats"])
    with pytest.raises(UserError, match="site brats: no model"):
        library.bottleneck_features(models.config, {"fastmri": models.models["fastmri"]}, sites)


@pytest.mark.slow
def test_a_slice_cap_keeps_evenly_spaced_slices(trained):
    models, sites = trained
    full, labels, volumes = library.bottleneck_features(models.config, models.models, sites)
    capped, capped_labels, _ = library.bottleneck_features(
        models.config, models.models, sites, max_slices_per_site=2
    )
    assert capped_labels.tolist() == ["fastmri", "fastmri", "brats", "brats"]
    # 2 of 3 slices, evenly spaced: the first and the last of each site's test split.
    assert np.allclose(capped, full[[0, 2, 3, 5]])


@pytest.mark.slow
def test_the_summary_is_json_ready_small_and_deterministic(run_dir):
    first = library.latent_summary(run_dir, seed=0)
    text = json.dumps(first)
    assert json.loads(text) == first and len(text) < 50_000
    assert library.latent_summary(run_dir, seed=0) == first
    assert first["sites"] == list(SITES) and first["features_dim"] == 16
    assert first["slices_per_site"] == {s: TEST_SLICES_PER_SITE for s in SITES}
    assert len(first["coords"]) == len(first["labels"]) == 2 * TEST_SLICES_PER_SITE
    assert all(round(v, 4) == v for point in first["coords"] for v in point)
    assert first["separability"]["chance"] == 0.5 and first["algorithm"] == "fedmri"


@pytest.mark.slow
def test_the_command_line_prints_one_line_per_run_and_writes_the_figure(run_dir, tmp_path, capsys):
    out = tmp_path / "fig" / "tsne.png"
    args = [str(run_dir), str(run_dir), "--title", "A", "--title", "B", "--out", str(out)]
    assert latent.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines if "site accuracy" in line] == ["A", "B"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [r["title"] for r in saved["runs"]] == ["A", "B"]
    assert saved["runs"][0]["coords"] == saved["runs"][1]["coords"]


def test_the_figure_is_written_for_several_panels(tmp_path):
    rng = np.random.default_rng(5)
    labels = ["fastmri", "brats", "sms", "umr"] * 10
    summary = {
        "labels": labels,
        "coords": rng.standard_normal((40, 2)).round(4).tolist(),
        "separability": {"accuracy": 0.5, "accuracy_std": 0.1, "chance": 0.25},
    }
    path = tmp_path / "tsne.png"
    library.tsne_figure(path, [(name, summary) for name in ("SingleSet", "FedAvg", "FedMRI")])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["no/such/run"], "run no/such/run: no such directory"),
        (["a", "b"], "--out: required with 2 runs"),
        (["a", "--title", "x", "--title", "y"], "--title: 2 given for 1 run(s)"),
        # The figure is a PNG and its summaries go beside it as .json: neither may be a folder or the other.
        (["a", "--out", "b"], "--out: b: expected a .png file"),
        (["a", "--out", "tsne.json"], "--out: tsne.json: expected a .png file"),
        (["a", "--out", "folder.png"], "--out: folder.png is a directory"),
        (["a", "--out", "taken.png"], "--out: taken.json is a directory"),
    ],
)
def test_command_line_errors_are_one_line_and_exit_2(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("name: x\n")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "taken.json").mkdir()
    assert latent.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err


def test_silhouette_matches_its_closed_form_and_is_zero_without_separation():
    # Two 1-D sites N(-10, 1) and N(+10, 1): a point's mean distance to its own site is E|X - Y| =
    # 2 / sqrt(pi) = 1.128 for independent N(0, 1) X, Y, and about 20 to the other site, so the
    # silhouette is about 1 - 1.128 / 20 = 0.944 (standardising scales both distances alike).
    rng = np.random.default_rng(4)
    features = np.concatenate([rng.normal(-10, 1, (500, 1)), rng.normal(10, 1, (500, 1))])
    labels = np.repeat(["a", "b"], 500)
    assert library.site_separability(features, labels)["silhouette"] == pytest.approx(0.944, abs=0.01)
    same = library.site_separability(rng.standard_normal((400, 8)), np.tile(["a", "b", "c", "d"], 100))
    assert abs(same["silhouette"]) < 0.03


@pytest.mark.parametrize("cap", [1])
def test_too_few_slices_for_tsne_are_refused_in_one_line(run_dir, capsys, cap):
    # 2 sites x 1 slice: t-SNE needs 4 points and the site classifier 2 slices per site
    code = latent.main([str(run_dir), "--max-slices-per-site", str(cap), "--out", str(run_dir / "t.png")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "fastmri 1, brats 1" in err and "--max-slices-per-site" in err, err
