"""bench/realism_diagnose.py: where a model's error against a real image lies."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import realism_diagnose as diagnose  # noqa: E402


def _head(size: int = 64) -> np.ndarray:
    rows, cols = np.indices((size, size)) - size / 2
    image = (np.hypot(rows, cols) < size / 3).astype(np.float64)
    return image + 0.3 * np.sin(rows / 2.0) * image  # some structure inside


def test_an_offset_is_low_band_error_and_the_intensity_fit_removes_it():
    target = _head() + 0.1  # a noise floor of 0.1 everywhere
    model = target - 0.05  # the model lowers the floor and everything else by 0.05
    zero_filled = target + np.random.default_rng(0).normal(0, 0.01, target.shape)
    d = diagnose.diagnose(zero_filled, model, target)
    assert d.offset == pytest.approx(0.05, abs=1e-9) and d.scale == pytest.approx(1.0, abs=1e-9)
    assert d.psnr_fitted > 100 and d.psnr_model < d.psnr_input
    assert d.low_model > 100 * d.low_input  # a constant shift is all at frequency zero
    assert d.high_model < 1e-12 * d.low_model
    # Parseval: the two bands add up to the error's energy times the pixels
    assert d.low_model + d.high_model == pytest.approx(target.size * np.sum(0.05**2 * np.ones(target.shape)))


def test_invented_texture_is_high_band_error_that_no_fit_removes():
    target = _head()
    rng = np.random.default_rng(1)
    texture = 0.1 * np.sign(np.sin(np.indices(target.shape)[1] * 2.5)) * (target > 0)  # fine stripes
    d = diagnose.diagnose(target + rng.normal(0, 0.01, target.shape), target + texture, target)
    assert d.high_model > 10 * d.low_model and d.high_model > 10 * d.high_input
    assert d.psnr_fitted == pytest.approx(d.psnr_model, abs=0.3)


def test_psnr_uses_the_targets_maximum():
    target = np.zeros((4, 4))
    target[0, 0] = 2.0
    image = target + 0.1
    assert diagnose.psnr(image, target) == pytest.approx(10 * np.log10(4.0 / 0.01))


def test_a_trained_run_is_diagnosed_on_a_real_volume_and_bad_input_is_one_line(tmp_path, tiny_config, capsys):
    from assembly.build import Builder
    from assembly.setup import in_process

    config = tiny_config(rounds=1)
    in_process(Builder(config, log=lambda _: None)).run()
    run = str(config.run_dir)
    figure = tmp_path / "fig.png"
    argv = ["--run", run, "--site", "fastmri", "--volume", "s0", "--figure", str(figure)]
    assert diagnose.main(argv) == 0
    out = capsys.readouterr().out
    assert "s0 slice 0: PSNR" in out and "s0 (mean of" in out and "low band" in out
    assert figure.stat().st_size > 0
    for bad, needle in [
        (["--site", "nowhere", "--volume", "s0"], "--site: 'nowhere' is not a site of"),
        (["--site", "fastmri", "--volume", "nothing"], "--volume: 'nothing' is not in the test set"),
        (["--site", "fastmri", "--volume", "s0", "--radius", "2"], "--radius: 2.0 is not between"),
        (["--site", "fastmri", "--volume", "s0", "--figure", str(figure), "--slice", "999"], "--slice: 999"),
    ]:
        assert diagnose.main(["--run", run, *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
