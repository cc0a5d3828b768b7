"""bench/realism_seeds.py: the transfer check's wins counted seed by seed and pooled."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import realism_seeds  # noqa: E402


def _report(path: Path, gains: dict[str, dict[str, tuple[float, float]]]) -> str:
    """A realism.json whose site's volume gains over zero-filled are (PSNR, SSIM) as given."""
    volumes = {
        site: [{"volume": name, "zero_filled": {"psnr": 25.0, "ssim": 0.5},
                "model": {"psnr": 25.0 + p, "ssim": 0.5 + s}} for name, (p, s) in by_volume.items()]
        for site, by_volume in gains.items()
    }  # fmt: skip
    path.write_text(json.dumps({"volumes": volumes}))
    return str(path)


def test_wins_are_counted_per_seed_and_pooled_against_ninety_percent(tmp_path, capsys):
    ten = {f"v{i}": (1.0, 0.1) for i in range(10)}
    first = _report(tmp_path / "a.json", {"x": ten})
    second = _report(tmp_path / "b.json", {"x": ten | {"v3": (-0.5, 0.1), "v7": (0.0, -0.02)}})
    summary = realism_seeds.summarise([realism_seeds.read_report(first), realism_seeds.read_report(second)])
    psnr, ssim = summary["x"]["psnr"], summary["x"]["ssim"]
    assert psnr["wins"] == [10, 8] and psnr["share"] == pytest.approx(18 / 20)  # a tie is no win
    assert psnr["lost"] == {"v3": [(1, -0.5)], "v7": [(1, 0.0)]}
    assert ssim["wins"] == [10, 9] and ssim["lost"] == {"v7": [(1, pytest.approx(-0.02))]}
    assert realism_seeds.main([f"one={first},{second}"]) == 0
    out = capsys.readouterr().out
    assert (
        "| one | x | 10/10, 8/10; 90%; mean gain +1.00, +0.75 dB | v3 (#2 -0.50 dB); v7 (#2 +0.00 dB) |"
        in out
    )
    assert "10/10, 9/10; 95%; mean gain +0.100, +0.088 | v7 (#2 -0.020) |" in out  # (9 x 0.1 - 0.02) / 10
    third = _report(tmp_path / "c.json", {"x": ten | {"v1": (-0.1, 0.1), "v2": (-0.1, 0.1)}})
    assert realism_seeds.main([f"one={first},{second}", f"two={third}"]) == 0
    assert "| two | x | 8/10; 80% (below 90 %); mean gain +0.78 dB |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, needle",
    [("{", "not a report of bench/realism.py"), ('{"volumes": {}}', "no sites"),
     ('{"volumes": {"x": [{"volume": "v"}]}}', "KeyError")],
)  # fmt: skip
def test_a_file_that_is_not_a_report_is_one_line_naming_it(tmp_path, capsys, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert realism_seeds.main([f"s={path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and needle in err[0], err


@pytest.mark.parametrize("argument", ["noequals.json", "=a.json", "name="])
def test_a_setting_without_name_or_files_is_one_line(capsys, argument):
    assert realism_seeds.main([argument]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected <setting>=<realism.json>" in err[0], err
