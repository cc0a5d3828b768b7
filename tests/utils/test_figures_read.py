"""Figures that read at a glance: 16 methods stay apart, legends sit outside the data, error maps share
one colour scale with a colour bar, every row and panel says what it shows, ablations show FedMRI's
bars beside theirs, and bar axes start at zero."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

from utils import figures


@pytest.fixture
def drawn(monkeypatch):
    """The figures a call draws, kept open for inspection instead of saved."""
    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.append(fig))
    yield kept
    for fig in kept:
        matplotlib.pyplot.close(fig)


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_sixteen_methods_each_get_their_own_colour_and_line(drawn):
    curves = {f"method {i}": list(np.linspace(20, 28, 30) + i * 0.01) for i in range(16)}
    figures.metric_curves("x.png", range(1, 31), curves)
    (fig,) = drawn
    (ax,) = fig.axes
    looks = {(matplotlib.colors.to_hex(line.get_color()), line.get_linestyle(), line.get_marker())
             for line in ax.get_lines()}  # fmt: skip
    assert len(looks) == 16
    pairs = {(c, s) for c, s, _ in looks}
    assert len(pairs) == 16  # colour and line style alone already tell them apart
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert not overlaps(ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer))


def test_error_maps_share_one_scale_with_a_colour_bar_and_the_rows_are_named(drawn):
    rng = np.random.default_rng(0)
    targets = [rng.random((16, 16)) + 0.5, 10 * rng.random((16, 16)) + 5]  # two sites, two ranges
    rows = [(name, [t + scale * rng.standard_normal(t.shape) for t in targets])
            for name, scale in (("zero-filled", 0.5), ("FedMRI", 0.05))]  # fmt: skip
    figures.reconstruction_grid("e.png", ["fastmri", "brats"], targets, rows, errors=True)
    (fig,) = drawn
    images = [ax.images[0] for ax in fig.axes if ax.images]
    errors = images[2:]  # after the ground-truth row
    assert len(errors) == 4 and len({(im.norm.vmin, im.norm.vmax) for im in errors}) == 1
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and bars[0].get_ylabel() == figures.ERROR_LABEL
    labels = [ax.get_ylabel() for ax in fig.axes if ax.images and ax.get_ylabel()]
    assert labels == ["ground truth", "zero-filled", "FedMRI"]
    # few pixels saturate: the scale's top is at or above the 99.5th percentile of the errors shown
    shown = np.concatenate([np.ravel(im.get_array()) for im in errors])
    assert errors[0].norm.vmax >= np.percentile(shown, 99.5)


def test_the_run_figure_has_a_colour_bar_on_its_error_map(drawn):
    rng = np.random.default_rng(1)
    target = rng.random((16, 16)) + 0.5
    figures.reconstruction_row("r.png", target * 0.8, target + 0.05, target, title="site")
    (fig,) = drawn
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)


def test_the_contrastive_panels_are_titled_and_their_axes_say_what_they_measure(drawn):
    by_round = {r: {"penalty": 1.0, "loss_rec": 0.5, "con_outside": 0.9, "con_dist": 1e-3, "con_spread": 2e-3}
                for r in (2, 3)}  # fmt: skip
    figures.contrastive_diagnostics("t.png", {"fastmri": by_round, "brats": by_round})
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) == 3 and all(ax.get_title() for ax in panels)
    assert "per weight" not in {ax.get_ylabel() for ax in panels}


def test_bars_start_at_zero_and_name_the_reference(drawn):
    series = {"FedMRI": ([27.0, 26.9], [0.3, 0.2]), "FedMRI, clipped": ([28.2, 28.3], [0.4, 0.3])}
    figures.grouped_bars("b.png", ["fastmri", "mean"], series, reference="FedMRI")
    (fig,) = drawn
    (ax,) = [a for a in fig.axes if a.patches]
    assert ax.get_ylim()[0] == 0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["FedMRI (reference)", "FedMRI, clipped"]


class FakeRow:
    """The parts of a study row the bar figures read."""

    def __init__(self, label, algorithm, families, runs, psnr):
        self.label, self.algorithm, self.families, self.keys, self.psnr = (
            label,
            algorithm,
            families,
            runs,
            psnr,
        )

    def same_runs(self, other):
        return other is not None and self.keys == other.keys

    def score(self, site, metric):
        return (self.psnr, 0.1, "seeds")


def test_a_single_variant_ablation_is_drawn_beside_fedmri(monkeypatch, tmp_path):
    from study import figures as study_figures

    drawn = {}
    monkeypatch.setattr(figures, "grouped_bars", lambda path, groups, series, **kw: drawn.update(
        {path.name: (list(series), kw.get("reference"))}))  # fmt: skip
    rows = [
        FakeRow("FedMRI", "fedmri", ["comparison"], {0: "fedmri"}, 27.0),
        FakeRow("FedAvg", "fedavg", ["comparison"], {0: "fedavg"}, 27.4),
        FakeRow("FedMRI, clipped L_con (ours)", "fedmri", ["clipped"], {0: "fedmri-clipped"}, 28.3),
        FakeRow("share encoder (FedMRI)", "fedmri", ["sharing"], {0: "fedmri"}, 27.0),
        FakeRow("share whole model", "fedmri", ["sharing"], {0: "fedmri-share-whole"}, 23.7),
    ]
    manifest = SimpleNamespace(sites=["fastmri"], ablations=["clipped", "sharing"])
    study_figures.bar_figures(tmp_path, manifest, rows)
    assert drawn["ablation_clipped.png"] == (["FedMRI", "FedMRI, clipped L_con (ours)"], "FedMRI")
    assert drawn["ablation_sharing.png"] == (
        ["share encoder (FedMRI)", "share whole model"],
        "share encoder (FedMRI)",
    )  # FedMRI's runs are already one of its rows
    assert drawn["psnr_per_site.png"] == (["FedMRI", "FedAvg"], None)
