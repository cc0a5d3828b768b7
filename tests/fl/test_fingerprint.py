"""A checkpoint's fingerprint against today's config: an option added after the checkpoint was written
is no difference while it keeps its default, and is one as soon as it does not."""

from __future__ import annotations

import copy

import pytest
import yaml

from assembly.config import validate_config
from fl.fingerprint import fingerprint, fingerprint_differences
from tests.conftest import tiny_config_dict
from utils.errors import UserError


def _fingerprint(tmp_path, **fedmri) -> dict:
    data = tiny_config_dict(tmp_path)
    data["fl"]["fedmri"] = fedmri
    return fingerprint(validate_config(data).to_dict())


def _written_before(stated: dict, section: str, key: str) -> dict:
    """``stated`` as a checkpoint written before option ``key`` of ``section`` existed would hold it."""
    older = copy.deepcopy(stated)
    del older[section][key]
    return older


def test_an_option_added_later_at_its_default_is_no_difference(tmp_path) -> None:
    today = _fingerprint(tmp_path)
    assert fingerprint_differences(_written_before(today, "fl.fedmri", "frozen_rounds"), today) == []
    assert fingerprint_differences(_written_before(today, "model", "kspace_loss_weight"), today) == []


def test_an_option_added_later_away_from_its_default_is_a_difference(tmp_path) -> None:
    older = _written_before(_fingerprint(tmp_path), "fl.fedmri", "frozen_rounds")
    assert fingerprint_differences(older, _fingerprint(tmp_path, frozen_rounds="even")) == [
        "fl.fedmri.frozen_rounds (None -> 'even')"
    ]


def test_an_option_the_checkpoint_names_is_compared_even_at_todays_default(tmp_path) -> None:
    """Only an option the checkpoint does not name at all is taken as its default; a stated value that
    differs (here None, which the option never takes) stays a difference."""
    older = _fingerprint(tmp_path)
    older["fl.fedmri"]["frozen_rounds"] = None
    today = _fingerprint(tmp_path)
    assert fingerprint_differences(older, today) == ["fl.fedmri.frozen_rounds (None -> 'none')"]
    other = _written_before(_fingerprint(tmp_path, beta=3.0), "fl.fedmri", "frozen_rounds")
    assert fingerprint_differences(other, today) == ["fl.fedmri.beta (3.0 -> 100.0)"]


def test_a_section_outside_the_options_is_compared_as_stated(tmp_path) -> None:
    today = _fingerprint(tmp_path)
    older = copy.deepcopy(today)
    older["sites"] = older["sites"][:1]
    assert fingerprint_differences(older, today) == ["sites (['fastmri'] -> ['fastmri', 'brats'])"]


def test_a_run_written_before_an_option_existed_still_evaluates(tmp_path) -> None:
    """load_run of a run whose config.yaml and checkpoints predate fl.fedmri.frozen_rounds gives its
    models; the same run with the option set away from its default is refused naming the key."""
    import train
    from assembly.evaluation import load_run
    from utils.checkpoint import load_checkpoint, save_checkpoint

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, rounds=1)))
    assert train.main(["--config", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    del written["fl"]["fedmri"]["frozen_rounds"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(written, sort_keys=False))
    for path in (run_dir / "checkpoints").glob("best_*.ckpt"):
        ckpt = load_checkpoint(path)
        ckpt["fingerprint"] = _written_before(ckpt["fingerprint"], "fl.fedmri", "frozen_rounds")
        save_checkpoint(ckpt, path)
    assert sorted(load_run(run_dir).models) == ["brats", "fastmri"]
    written["fl"]["fedmri"]["frozen_rounds"] = "even"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(written, sort_keys=False))
    with pytest.raises(UserError, match=r"another config \(fl\.fedmri\.frozen_rounds \(None -> 'even'\)\)"):
        load_run(run_dir)
