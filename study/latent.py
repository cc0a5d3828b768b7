"""Latent features of trained runs: the bottleneck of every test slice through its site's own model,
embedded in 2-D with t-SNE (the FedMRI paper's panels) and scored by how well a linear classifier tells
the sites apart; and a study's t-SNE panels, read from its latent files.

Every test slice of every site is encoded by that site's own model (its best checkpoint); the
bottleneck feature map is averaged over space to one vector per slice. The vectors of all sites are
embedded in 2-D with t-SNE (one panel per run) and a linear classifier is cross-validated at telling
the sites apart from them: the lower its accuracy, the less the sites are separated in the latent space
(the paper's claim is that FedMRI's shared encoder keeps the sites apart less than SingleSet does).
Only ``model.kind: unet`` runs have such features (see :func:`bottleneck_features`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from study.records import LatentFile
from utils.errors import UserError

if TYPE_CHECKING:
    from assembly.config import Config
    from data.site import SiteDataModule

SPLITS = ("val", "test")  # fixed masks, slices in volume order


def bottleneck_features(
    config: Config,
    models: dict[str, dict[str, Any]],
    sites: dict[str, SiteDataModule],
    split: str = "test",
    max_slices_per_site: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The U-Net bottleneck of every slice of ``split`` of every site, through that site's own model.

    The input is what the ReconModule feeds the U-Net: the zero-filled, instance-normalised image of
    the data module's samples (``batch["input"]``, in the model's memory order). The encoder's
    bottleneck map (N, C, h, w) with C = ``model.chans * 2**model.num_pool_layers`` is averaged over
    h and w. Models run in float32 on the CPU in eval mode without gradients and without
    ``model.compile`` (the same weights and layers, so the same features); the order of the rows is
    the sites' order, then the split's volume order.

    Args:
        config: the run's config (its ``model`` section builds the network).
        models: site name -> the U-Net state dict of that site's model; every site of ``sites`` needs one.
        sites: site name -> its prepared data module (:func:`evaluation.build_sites`).
        split: ``test`` or ``val``.
        max_slices_per_site: at most this many slices per site, evenly spaced over the split (all if None).

    Returns:
        features (N, C) float64, site labels (N,) of site names, and the volume name of each row.

    Raises:
        UserError: a ``model.kind`` other than ``unet`` (the dual-domain cascade's two U-Nets read
            k-space and an intermediate image, never the zero-filled image, so it has no such
            features), a site without a model, or a split without slices.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    from assembly.evaluation import new_module

    if config.model.kind != "unet":
        raise UserError(
            f"model.kind {config.model.kind}: latent features are the image U-Net's bottleneck "
            "(model.kind unet); this network has no U-Net encoder that reads the zero-filled image"
        )
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    if max_slices_per_site is not None and max_slices_per_site < 1:
        raise UserError(f"max_slices_per_site: expected a positive count, found {max_slices_per_site}")
    plain = config.model_copy(update={"model": config.model.model_copy(update={"compile": False})})
    features, labels, volumes = [], [], []
    for name, data in sites.items():
        if name not in models:
            raise UserError(f"site {name}: no model for it among {', '.join(models) or 'none'}")
        dataset = data.datasets[split]
        if not len(dataset):
            raise UserError(f"sites.{name}: has no {split} slices")
        if max_slices_per_site is not None and max_slices_per_site < len(dataset):
            chosen = np.unique(np.linspace(0, len(dataset) - 1, max_slices_per_site).round().astype(int))
            dataset = Subset(dataset, chosen.tolist())
        module = new_module(plain, models[name]).cpu().float().eval()
        encoder = module.model.encoder
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=data.batch_size, shuffle=False):
                bottleneck, _ = encoder(module._layout(batch["input"].float()))
                features.append(bottleneck.mean(dim=(-2, -1)).double().numpy())
                volumes.extend(batch["volume"])
                labels.extend([name] * len(bottleneck))
    return np.concatenate(features), np.asarray(labels), volumes


def embed_tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE embedding (N, 2) of ``features`` (N, C).

    Each feature is first standardised to zero mean and unit variance over the N rows (constant
    features stay 0), so that no channel dominates the distances by its scale alone. Then scikit-learn's
    TSNE with ``init="pca"``, ``random_state=seed`` and perplexity ``min(30, (N - 1) / 3)`` (the
    perplexity must stay below N; a third of it leaves each point enough neighbours at small N).
    """
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 4:
        raise ValueError(f"t-SNE needs at least 4 feature vectors in an (N, C) array, got {features.shape}")
    scaled = StandardScaler().fit_transform(features)
    perplexity = min(30.0, (len(features) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(scaled)


def site_separability(
    features: np.ndarray, labels: Sequence[str] | np.ndarray, seed: int = 0, folds: int = 5
) -> dict[str, Any]:
    """How well a linear classifier tells the sites apart from ``features``: cross-validated accuracy.

    StandardScaler + LogisticRegression (L2, C=1, up to 5000 iterations), fitted on each training fold
    only, over StratifiedKFold(``folds``, shuffled with ``seed``); ``folds`` is lowered to the size of
    the smallest site when that is smaller (at least 2 rows per site are needed).

    Returns:
        ``accuracy`` and ``accuracy_std`` (mean and population std over the folds), ``fold_accuracies``,
        ``folds``, ``chance`` (the share of the largest site: the accuracy of always answering the most
        common site, which is 1 / number of sites when the sites are equally large), ``sites`` (their
        count), ``samples`` and ``silhouette``: the mean silhouette coefficient of the standardised
        features with the sites as clusters (Euclidean; -1 to 1, 0 = sites overlap, 1 = compact and
        apart), which still ranks runs when every one of them is linearly separable (accuracy 1).
        Lower accuracy or silhouette = sites less separated; ``chance`` = not separated at all.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features {features.shape} and labels {labels.shape}: expected (N, C) and (N,)")
    names, counts = np.unique(labels, return_counts=True)
    if len(names) < 2:
        raise ValueError(f"site separability needs at least 2 sites, got {len(names)}")
    folds = min(folds, int(counts.min()))
    if folds < 2:
        raise ValueError(f"site {names[counts.argmin()]} has 1 sample; cross-validation needs at least 2")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(classifier, features, labels, cv=splits, scoring="accuracy")
    return {
        "accuracy": float(scores.mean()),
        "accuracy_std": float(scores.std()),
        "fold_accuracies": [float(s) for s in scores],
        "folds": folds,
        "chance": float(counts.max() / counts.sum()),
        "sites": len(names),
        "samples": len(labels),
        "silhouette": float(silhouette_score(StandardScaler().fit_transform(features), labels)),
    }


def latent_summary(
    run_dir: str | Path, seed: int = 0, max_slices_per_site: int | None = None
) -> dict[str, Any]:
    """The latent features of a run's test slices, embedded and scored, as a small JSON-ready dict.

    Keys: ``source`` (the run directory), ``algorithm``, ``seed``, ``sites`` (in the config's order),
    ``labels`` (the site of each point), ``coords`` ([x, y] per point from :func:`embed_tsne`, rounded
    to 4 decimals), ``separability`` (:func:`site_separability`), ``features_dim`` (C) and
    ``slices_per_site``.
    """
    from assembly.build import quiet_lightning
    from assembly.evaluation import build_sites, load_run

    quiet_lightning()
    trained = load_run(run_dir)
    sites = build_sites(trained.config)
    features, labels, _ = bottleneck_features(
        trained.config, trained.models, sites, "test", max_slices_per_site
    )
    counts = {name: int((labels == name).sum()) for name in sites}
    if len(sites) < 2 or len(features) < 4 or min(counts.values()) < 2:
        shown_counts = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise UserError(
            f"{run_dir}: t-SNE and the site classifier need at least 2 sites, 2 test slices per site "
            f"and 4 in all (got {shown_counts}); raise --max-slices-per-site or test on more slices"
        )
    coords = embed_tsne(features, seed)
    return {
        "source": str(run_dir),
        "algorithm": trained.config.fl.algorithm,
        "seed": seed,
        "sites": list(sites),
        "labels": labels.tolist(),
        "coords": [[round(float(x), 4), round(float(y), 4)] for x, y in coords],
        "separability": site_separability(features, labels, seed),
        "features_dim": int(features.shape[1]),
        "slices_per_site": counts,
    }


def panel_title(title: str, latent: LatentFile) -> str:
    """A panel's title: its name and the site classifier's accuracy against chance."""
    s = latent.separability
    line = f"site accuracy {s.accuracy:.2f} ± {s.accuracy_std:.2f} (chance {s.chance:.2f})"
    if s.silhouette is not None:
        line += f"\nsilhouette {s.silhouette:.2f}"
    return f"{title}\n{line}"


def tsne_figure(path: str | Path, panels: Sequence[tuple[str, LatentFile | dict[str, Any]]]) -> None:
    """One row of t-SNE panels (title, a :func:`latent_summary` or a latent file read), points coloured
    by site (one legend for the row), each titled with its separability; written atomically as a PNG."""
    from utils.figures import scatter_panels

    read = [(title, LatentFile.model_validate(summary)) for title, summary in panels]
    scatter_panels(
        path,
        [(panel_title(title, s), np.asarray(s.coords), s.labels) for title, s in read],
        title="t-SNE of the test slices' bottleneck features (each site through its own model)",
    )


def summary_line(title: str, summary: dict[str, Any]) -> str:
    """One printed line per run: the separability and what it was computed on."""
    s = summary["separability"]
    return (
        f"{title}: site accuracy {s['accuracy']:.3f} ± {s['accuracy_std']:.3f} over {s['folds']} folds "
        f"(chance {s['chance']:.3f}); {s['sites']} sites, {s['samples']} test slices, "
        f"{summary['features_dim']}-d features"
    )


def write_tsne(
    runs: Sequence[str],
    titles: Sequence[str],
    out: str | None,
    seed: int = 0,
    max_slices_per_site: int | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Every run's :func:`latent_summary`, one :func:`summary_line` each, then their t-SNE panels in
    the PNG ``out`` (default with one run: ``<run>/evaluation/latent_tsne.png``) and the summaries
    beside it as ``.json``; returns the figure's path. Bad arguments are one :class:`UserError` line
    naming the command-line option, raised before anything is computed."""
    from utils.io import atomic_write_text

    path = _figure_path(runs, titles, out, max_slices_per_site)
    titles = list(titles) or [Path(run).resolve().name for run in runs]
    panels = []
    for title, run in zip(titles, runs):
        summary = latent_summary(run, seed, max_slices_per_site)
        log(summary_line(title, summary))
        panels.append((title, summary))
    tsne_figure(path, panels)
    json_path = path.with_suffix(".json")
    saved = [{"title": title, **summary} for title, summary in panels]
    atomic_write_text(json_path, json.dumps({"runs": saved}, separators=(",", ":")) + "\n")
    log(f"wrote {path} and {json_path}")
    return path


def _figure_path(
    runs: Sequence[str], titles: Sequence[str], out: str | None, max_slices_per_site: int | None
) -> Path:
    """The figure's path, once the runs, titles and slice cap are checked."""
    from utils.paths import check_path_text, check_writable_dir

    if titles and len(titles) != len(runs):
        raise UserError(f"--title: {len(titles)} given for {len(runs)} run(s); give one per run")
    if max_slices_per_site is not None and max_slices_per_site < 1:
        raise UserError(f"--max-slices-per-site: expected a positive count, found {max_slices_per_site}")
    for run in runs:
        if not (Path(run) / "config.yaml").is_file():
            what = "no config.yaml there" if Path(run).is_dir() else "no such directory"
            raise UserError(f"run {run}: {what}; expected a directory written by train.py")
    if out:
        check_path_text(out, "--out")
        path = Path(out)
    elif len(runs) == 1:
        path = Path(runs[0]) / "evaluation" / "latent_tsne.png"
    else:
        raise UserError(f"--out: required with {len(runs)} runs (the figure's path)")
    # The figure is always PNG (utils.figures) and the summaries go beside it as .json.
    if path.suffix.lower() != ".png":
        raise UserError(f"--out: {path}: expected a .png file (the summaries go beside it as .json)")
    for target in (path, path.with_suffix(".json")):
        if target.is_dir():
            raise UserError(f"--out: {target} is a directory, not a file path")
    check_writable_dir(path.parent, "--out")
    return path
