"""Config loading, overrides and one-line validation errors."""

import re
from pathlib import Path

import pytest
import yaml

from assembly.config import load_config, parse_yaml
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_configs_validate():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        config = load_config(path)
        assert config.sites, path


def test_defaults_are_the_papers():
    config = load_config(ROOT / "configs" / "paper.yaml")
    assert config.model.chans == 32 and config.model.num_pool_layers == 4
    assert (config.fl.rounds, config.fl.local_epochs) == (50, 10)
    assert (config.optim.name, config.optim.lr, config.optim.lr_step_rounds, config.optim.lr_gamma) == (
        "rmsprop",
        1e-4,
        40,
        0.1,
    )
    assert (config.fl.fedmri.beta, config.fl.fedmri.lam) == (100.0, 1.0)
    assert [s.source.size for s in config.sites] == [192, 240, 320, 320]


def test_overrides_reach_nested_keys_and_list_items():
    config = load_config(
        ROOT / "configs" / "default.yaml",
        ["sites.0.mask.acceleration=8", "fl.rounds=3", "fl.algorithm=fedavg", "optim.lr=2e-4", "name=x"],
    )
    assert config.sites[0].mask.acceleration == 8
    assert config.sites[1].mask.acceleration == 5
    assert (config.fl.rounds, config.fl.algorithm, config.optim.lr, config.name) == (3, "fedavg", 2e-4, "x")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("sites.0.mask.acceleration=0.5", "sites.0.mask.acceleration"),
        ("fl.rounds=0", "fl.rounds"),
        ("fl.algorithm=fedfoo", "fl.algorithm"),
        ("sites.1.mask.kind=spiral", "sites.1.mask"),
        ("sites.2.source.kind=tape", "sites.2.source"),
        ("fl.roundz=3", "fl.roundz"),
        ("model.chans=many", "model.chans"),
        ("sites.0.source.size=8", "sites.0.source.size"),
        ("loss=ssim", "loss"),
        ("fl.fedmri.negatives=some", "fl.fedmri.negatives"),
    ],
)
def test_bad_values_name_their_key(override, key):
    with pytest.raises(UserError) as info:
        load_config(ROOT / "configs" / "default.yaml", [override])
    message = str(info.value)
    assert key in message and "\n" not in message


def test_malformed_overrides_and_files(tmp_path):
    with pytest.raises(UserError, match="expected key.path=value"):
        load_config(ROOT / "configs" / "default.yaml", ["fl.rounds"])
    sites = len(load_config(ROOT / "configs" / "default.yaml").sites)
    past_the_end = ((f"sites.{sites}.batch_size=2", sites), (f"sites[{sites + 5}].batch_size=2", sites + 5))
    for past, index in past_the_end:
        expected = f"sites has {sites} entries, so there is no index {index}; the last is sites.{sites - 1}"
        with pytest.raises(UserError, match=re.escape(expected)):
            load_config(ROOT / "configs" / "default.yaml", [past])
    for negative in ("sites.-1.batch_size=2", "sites[-1].batch_size=2"):  # not the last site, silently
        with pytest.raises(UserError, match="list index -1 is negative"):
            load_config(ROOT / "configs" / "default.yaml", [negative])
    with pytest.raises(UserError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites: [unclosed\n")
    with pytest.raises(UserError, match="bad.yaml"):
        load_config(bad)
    empty_sites = tmp_path / "empty.yaml"
    empty_sites.write_text(yaml.safe_dump({"sites": []}))
    with pytest.raises(UserError, match="sites"):
        load_config(empty_sites)


def test_a_key_given_twice_in_a_file_is_refused_not_merged(tmp_path):
    # YAML itself lets the last one win: an appended "fl:" section would silently reset fl.rounds.
    text = (ROOT / "configs" / "default.yaml").read_text() + "\nfl:\n  algorithm: fedavg\n"
    twice = tmp_path / "twice.yaml"
    twice.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(twice)
    message = str(info.value)
    assert "\n" not in message and "twice.yaml" in message and "key 'fl' appears twice" in message
    with pytest.raises(UserError, match="key 'kind' appears twice in one mapping, on line 1"):
        load_config(ROOT / "configs" / "default.yaml", ["sites.0.mask={kind: uniform_1d, kind: random_1d}"])
    # A YAML merge key followed by a key it brings in is an override, not a repetition.
    assert parse_yaml("a: &o {lr: 1, x: 2}\nb:\n  <<: *o\n  lr: 3\n")["b"] == {"lr": 3, "x": 2}


def test_duplicate_site_names_rejected():
    with pytest.raises(UserError, match="unique"):
        load_config(ROOT / "configs" / "default.yaml", ["sites.1.name=fastmri"])


def test_resolved_config_round_trips(tmp_path):
    from assembly.config import save_config, validate_config

    config = load_config(ROOT / "configs" / "default.yaml", ["fl.rounds=2"])
    save_config(config, tmp_path / "config.yaml")
    again = validate_config(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sites.0.mask.acceleration=0.5", "sites.0.mask.acceleration: must be >= 1 (got 0.5)"),
        ("sites.3.mask.sigma=0", "sites.3.mask.sigma: must be > 0 (got 0)"),
        ("sites.0.mask.sigma=0.2", "sites.0.mask.sigma: unknown key"),  # uniform_1d has no sigma
        ("sites.2.mask.golden_angle=1", "sites.2.mask.golden_angle: input should be a valid boolean (got 1)"),
        (
            "sites.0.mask.center_fraction=0.5",
            "sites.0.mask.center_fraction: mask uniform_1d: center_fraction 0.5 keeps more than "
            "1/acceleration = 1/3 of k-space; lower one of them",
        ),
        (
            "sites.1.mask.kind=spiral",
            "sites.1.mask: unknown kind 'spiral'; expected one of 'random_1d', 'equispaced_1d', "
            "'uniform_1d', 'random_2d', 'radial_2d', 'poisson_2d', 'file'",
        ),
        ("sites.0.mask={kind: file, path: /no.npy}", "sites.0.mask.path: mask file /no.npy: not found"),
    ],
)
def test_mask_errors_name_the_mask_key(override, message):
    with pytest.raises(UserError) as info:
        load_config(ROOT / "configs" / "default.yaml", [override])
    assert str(info.value).startswith(f"config error in {ROOT / 'configs' / 'default.yaml'}: {message}")


def test_mask_sections_are_each_kinds_typed_options():
    from data.masks import Radial2DOptions, build_mask

    config = load_config(ROOT / "configs" / "default.yaml", ["sites.2.mask.golden_angle=true"])
    mask = config.sites[2].mask
    assert isinstance(mask, Radial2DOptions) and mask.golden_angle and mask.acceleration == 4.0
    assert build_mask(mask)((32, 32), 0).shape == (32, 32)


def test_a_config_path_that_is_a_folder_or_a_broken_link_says_so(tmp_path):
    with pytest.raises(UserError, match=r"^config .*: is a folder; expected a YAML file"):
        load_config(tmp_path)
    link = tmp_path / "linked.yaml"
    link.symlink_to(tmp_path / "moved.yaml")
    broken = r"^config .*linked\.yaml: a link to .*moved\.yaml, which does not exist$"
    with pytest.raises(UserError, match=broken):
        load_config(link)


def test_an_invalid_config_file_is_named_in_the_error(tmp_path):
    # An empty file (a run's config.yaml truncated, say) holds no sites: the error names the file.
    empty = tmp_path / "config.yaml"
    empty.write_text("")
    with pytest.raises(UserError) as info:
        load_config(empty)
    assert str(info.value).startswith(f"config error in {empty}: ") and "sites" in str(info.value)


@pytest.mark.parametrize(
    "override", ['name={"\\n": {"": null}}', 'name={"a\\u2028b": {"": 1}}', 'name={"\\t\\r": {"": 1}}']
)
def test_a_key_with_a_line_break_is_still_a_one_line_error(override):
    """A key quoted from the input may hold line breaks; the message is still one line."""
    with pytest.raises(UserError) as info:
        load_config("configs/default.yaml", [override])
    message = str(info.value)
    assert message.startswith("override name:") and len(message.splitlines()) == 1, message
    assert "\n" not in message and "\r" not in message and "\u2028" not in message
