"""TensorBoard, read back from the event files: each site's validation slice every round (zero-filled,
reconstruction, ground truth, error), the validation and test metrics, and their means over sites."""

import csv
import io
import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from assembly.build import Builder
from assembly.setup import in_process
from fl.reporter import MEAN_VAL, SEPARATOR, SLICE_TAG, slice_panels


def quiet(_):
    return None


def events(run_dir):
    accumulator = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def scalar(tb, tag):
    return {e.step: e.value for e in tb.Scalars(tag)}


@pytest.mark.parametrize("algorithm", ["fedmri", "centralized"])
def test_every_round_shows_each_sites_slice_and_the_end_its_test_metrics(tiny_config, algorithm):
    config = tiny_config(algorithm=algorithm, rounds=2)
    in_process(Builder(config, log=quiet)).run()
    tb = events(config.run_dir)
    sites = [s.name for s in config.sites]
    size = config.sites[0].source.size

    for site in sites:  # one image per site and round, bounded: one slice
        images = tb.Images(f"{site}/{SLICE_TAG}")
        assert [e.step for e in images] == [1, 2]
        assert (images[0].height, images[0].width) == (size, 4 * size + 3 * SEPARATOR)

    rows = list(csv.DictReader(io.StringIO((config.run_dir / "metrics.csv").read_text())))
    for rnd in (1, 2):
        val = [float(r["psnr"]) for r in rows if r["split"] == "val" and int(r["round"]) == rnd]
        assert scalar(tb, f"{MEAN_VAL}/psnr")[rnd] == pytest.approx(np.mean(val), abs=1e-4)

    results = json.loads((config.run_dir / "results.json").read_text())
    for site in sites:
        for metric in ("psnr", "ssim", "nmse"):
            expected = results["sites"][site]["model"][metric]
            assert scalar(tb, f"{site}/test/{metric}") == {2: pytest.approx(expected, rel=1e-6)}
        zero = results["sites"][site]["zero_filled"]["psnr"]
        assert scalar(tb, f"{site}/test_zero_filled/psnr") == {2: pytest.approx(zero, rel=1e-6)}
    assert scalar(tb, "mean/test/psnr") == {2: pytest.approx(results["mean"]["model"]["psnr"], rel=1e-6)}


def test_the_panels_share_the_ground_truths_scale_and_magnify_the_error():
    target = np.full((4, 4), 2.0)
    shown = {"zero_filled": np.full((4, 4), 1.0), "pred": np.full((4, 4), 1.9), "target": target}
    panels = slice_panels(shown)
    assert panels.shape == (4, 16 + 3 * SEPARATOR)
    width = 4 + SEPARATOR
    assert panels[0, 0] == 0.5 and panels[0, width] == pytest.approx(0.95)
    assert panels[0, 2 * width] == 1.0 and panels[0, 3 * width] == pytest.approx(5 * 0.1 / 2.0)
    assert panels[0, 4] == 1.0  # the separator
