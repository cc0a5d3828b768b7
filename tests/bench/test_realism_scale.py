"""bench/realism_scale.py: a run's models on real heads scaled in the field of view."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import realism_scale  # noqa: E402
import realism_sites  # noqa: E402
import realism_volumes  # noqa: E402


def test_a_scale_makes_the_head_that_many_times_larger_in_the_sites_matrix():
    volume = realism_volumes.TEST_VOLUMES["s0"]
    (big,) = realism_scale.scaled({"s0": volume}, 1.5).values()
    assert big.pixel_mm == pytest.approx(1.5 * volume.pixel_mm) and big.path == volume.path
    square = np.zeros((1, 60, 60), np.float32)
    square[0, 20:40, 20:40] = 1.0  # 20 pixels across
    widths = {}
    for scale in (1.0, 1.5):
        fitted = realism_sites.fit_to_site(square, 2.0 * scale, 2.0, 96)[0]
        widths[scale] = int((fitted[48] > 0.5).sum())
    assert widths[1.0] == pytest.approx(20, abs=1) and widths[1.5] == pytest.approx(30, abs=1)


def test_the_table_gives_mean_gains_and_wins_per_site_and_scale():
    rows = {"sms": {1.0: [{"psnr": 1.0, "ssim": 0.1}, {"psnr": -0.5, "ssim": 0.2}],
                    1.5: [{"psnr": -2.0, "ssim": -0.1}, {"psnr": -1.0, "ssim": 0.1}]}}  # fmt: skip
    text = realism_scale.table([1.0, 1.5], rows)
    assert text.splitlines()[0] == "| site | x1 | x1.5 |"
    assert "| sms | +0.25 / +0.150 (1/2) | -1.50 / +0.000 (0/2) |" in text


@pytest.mark.parametrize("bad", ["", "a,b", "0,1", "1,9"])
def test_bad_scales_are_refused(bad):
    from utils.errors import UserError

    with pytest.raises(UserError, match="--scales"):
        realism_scale.parse_scales(bad)


def test_a_trained_run_is_swept_and_bad_input_is_one_line(tiny_config, capsys):
    from assembly.build import Builder
    from assembly.setup import in_process

    config = tiny_config(rounds=1)
    in_process(Builder(config, log=lambda _: None)).run()
    run = str(config.run_dir)
    argv = ["--run", run, "--volumes", "test", "--scales", "1,1.5", "--site", "fastmri"]
    assert realism_scale.main(argv) == 0
    out = capsys.readouterr().out
    assert "| site | x1 | x1.5 |" in out
    (row,) = [line for line in out.splitlines() if line.startswith("| fastmri |")]
    assert row.count("/") == 4 and "brats" not in out  # two cells, one site
    for bad, needle in [
        (["--site", "nowhere"], "--site: 'nowhere' is not a site of"),
        (["--scales", "x"], "--scales: 'x' is not a comma-separated list"),
    ]:
        assert realism_scale.main(["--run", run, *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
