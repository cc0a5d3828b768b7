"""trainer.precision: auto resolves from the capabilities found; the run's config.yaml holds the choice."""

from pathlib import Path

import pytest
import yaml

from assembly.config import validate_config
from utils.hardware import cpu_flags, resolve_precision

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"sse2", "avx2", "avx512f", "avx512_bf16"}, "bf16-mixed"),
        ({"sse2", "avx2", "amx_tile", "amx_bf16"}, "bf16-mixed"),
        ({"sse2", "avx2", "avx512f"}, "32-true"),  # AVX-512 without its bf16 extension
        (set(), "32-true"),
    ],
)
def test_cpu_precision_follows_the_flags(flags, expected):
    choice = resolve_precision("cpu", flags=flags, cuda=None)
    assert choice.precision == expected
    assert choice.reason


@pytest.mark.parametrize(
    ("accelerator", "cuda", "flags", "expected"),
    [
        ("auto", True, set(), "bf16-mixed"),  # an Ampere or newer card
        ("auto", False, {"avx512_bf16"}, "32-true"),  # an older card is used, whatever the CPU has
        ("cuda", True, set(), "bf16-mixed"),
        ("gpu", False, set(), "32-true"),
        ("auto", None, {"avx512_bf16"}, "bf16-mixed"),  # no CUDA: the CPU decides
        ("auto", None, set(), "32-true"),
        ("cpu", True, set(), "32-true"),  # the CPU is asked for even though a GPU is there
        ("mps", None, {"avx512_bf16"}, "32-true"),
    ],
)
def test_device_precision(accelerator, cuda, flags, expected):
    assert resolve_precision(accelerator, flags=flags, cuda=cuda).precision == expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx512_bf16\n\nflags : other\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_auto_is_resolved_in_the_config_and_saved(tmp_path):
    from assembly.build import Builder
    from assembly.setup import in_process
    from tests.conftest import tiny_config_dict

    data = tiny_config_dict(tmp_path, rounds=1)
    data["trainer"] = {"accelerator": "cpu", "precision": "auto"}
    config = validate_config(data)
    expected = resolve_precision("cpu").precision
    assert config.trainer.precision == expected
    del data["trainer"]["precision"]  # the schema's default is auto too
    assert validate_config(data).trainer.precision == expected
    lines = []
    in_process(Builder(config, log=lines.append)).run()
    saved = yaml.safe_load((config.run_dir / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == expected
    assert any(line.startswith(f"precision {expected}: ") for line in lines)


def test_explicit_precision_is_kept():
    for precision in ("32-true", "bf16-mixed"):
        data = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
        data["trainer"]["precision"] = precision
        assert validate_config(data).trainer.precision == precision


def test_float16_on_the_cpu_is_refused_in_one_line(tmp_path):
    # Lightning would substitute bf16-mixed on a CPU, and the run would record 16-mixed.
    from assembly.config import load_config
    from utils.errors import UserError

    data = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    data["trainer"].update(accelerator="cpu", precision="16-mixed")
    path = tmp_path / "fp16.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert "trainer.precision" in message and "16-mixed" in message and "bf16-mixed or 32-true" in message
    assert "\n" not in message
