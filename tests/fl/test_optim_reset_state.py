"""``optim.reset_state`` (ours, default false): a fresh optimiser state at the start of every round's local
fit, for the site's model and for a companion (Ditto's global copy); the learning rate schedule and an
exact resume are unaffected, and the default keeps one state per site for the whole run."""

import json

import pytest
import yaml

from assembly.build import Builder
from assembly.config import load_config
from assembly.setup import in_process
from tests.assembly.test_faults import assert_same_tensors, create_run, final_state
from tests.conftest import tiny_config_dict
from utils.errors import UserError


def _federation(tiny_config, algorithm, reset):
    config = tiny_config(algorithm=algorithm)
    config.optim.reset_state = reset
    config.optim.lr_step_rounds, config.optim.lr_gamma = 1, 0.5  # a new learning rate every round
    fed = in_process(Builder(config, log=lambda _: None)).rounds
    fed.sites = fed.transport.sites
    return fed, config


def _steps(state):
    """The ``step`` count of every parameter's entry of an optimiser state dict."""
    return [int(entry["step"]) for entry in state["state"].values()]


def _entries_at_fit_start(site):
    """Record, at the start of each plan's fit, how many parameters the site's optimiser holds state for."""
    seen, fit_plan = [], site._fit_plan

    def recorded(plan, skip=0):
        seen.append(len(site.module.optimizer.state))
        return fit_plan(plan, skip)

    site._fit_plan = recorded
    return seen


@pytest.mark.parametrize("reset", [True, False])
def test_round_two_starts_from_an_empty_state_only_with_reset(tiny_config, reset):
    fed, config = _federation(tiny_config, "fedmri", reset)
    site = fed.sites[0]
    per_round = -(-site.data.num_train_slices // site.data.batch_size)
    seen = _entries_at_fit_start(site)
    fed.round(1)
    fed.round(2)
    steps = _steps(site.module.optimizer.state_dict())
    assert steps and set(steps) == {per_round if reset else 2 * per_round}
    assert seen[0] == 0 and (seen[1] == 0) == reset
    assert [g["lr"] for g in site.module.optimizer.param_groups] == [config.optim.lr_at(2)]


@pytest.mark.parametrize("algorithm", ["fedavg", "ditto", "fedrep"])
def test_every_algorithm_counts_only_the_rounds_steps(tiny_config, algorithm):
    fed, config = _federation(tiny_config, algorithm, True)
    site = fed.sites[0]

    def counts():  # the site's own optimiser; Ditto's also the global copy's, kept by its client
        own = _steps(site.module.optimizer.state_dict())
        return own, _steps(site.client.optimizer) if algorithm == "ditto" else None

    fed.round(1)
    first = counts()
    fed.round(2)
    assert first[0] and counts() == first  # round 2's steps only, as many as round 1's
    assert algorithm != "ditto" or first[1]
    assert [g["lr"] for g in site.module.optimizer.param_groups] == [config.optim.lr_at(2)]


@pytest.mark.parametrize("reset", [True, False])
def test_flmrcm_discriminators_start_each_round_afresh_only_with_reset(tiny_config, reset):
    """FL-MRCM's source site keeps an optimiser of its own, its discriminator's: reset with the rest."""
    fed, _ = _federation(tiny_config, "flmrcm", reset)
    source = next(site for site in fed.sites if site.client.target != site.name)
    fed.round(1)
    first = source.client.disc_steps
    fed.round(2)
    steps = _steps(source.client.disc_optimizer.state_dict())
    assert (
        first
        and steps
        and set(steps) == {source.client.disc_steps if reset else first + source.client.disc_steps}
    )


def test_resume_of_an_interrupted_reset_run_equals_the_uninterrupted_run(tiny_config):
    reference = tiny_config(rounds=3)
    reference.name, reference.optim.reset_state = "reference", True
    create_run(reference).run()

    interrupted = tiny_config(rounds=3)
    interrupted.optim.reset_state = True
    run = create_run(interrupted)
    fed = run.rounds
    original = fed.round

    def crash_in_round_3(rnd):
        if rnd == 3:
            raise KeyboardInterrupt
        return original(rnd)

    fed.round = crash_in_round_3
    with pytest.raises(KeyboardInterrupt):
        run.run()
    resumed = create_run(interrupted)
    assert resumed.resume() and resumed.completed == 2
    resumed.run()

    ref_ckpt, ref_metrics, ref_results = final_state(reference.run_dir)
    ckpt, metrics, results = final_state(interrupted.run_dir)
    for key in ("global", "sites", "server", "best", "history", "round"):
        assert_same_tensors(ref_ckpt[key], ckpt[key], key)
    assert metrics == ref_metrics
    assert json.loads(results) | {"name": "x"} == json.loads(ref_results) | {"name": "x"}
    per_round = -(-fed.sites[0].data.num_train_slices // fed.sites[0].data.batch_size)
    assert set(_steps(fed.sites[0].module.optimizer.state_dict())) == {per_round}  # the last round's only


def test_a_bad_value_is_a_one_line_config_error_naming_the_key(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    assert load_config(path).optim.reset_state is False
    assert load_config(path, ["optim.reset_state=true"]).optim.reset_state is True
    for overrides in (["optim.reset_state=maybe"], ["optim.reset_state=true", "fl.algorithm=centralized"]):
        with pytest.raises(UserError) as err:
            load_config(path, overrides)
        message = str(err.value)
        assert "\n" not in message and "optim.reset_state" in message
