"""The federation loop: what aggregation touches, and what persists across rounds."""

import pytest
import torch

from assembly.build import Builder
from assembly.setup import in_process
from fl.federation import Federation


@pytest.fixture
def federation(tiny_config):
    """Factory: the in-process Federation of train.py for a tiny config, sites as ``fed.sites``."""

    def make(**kwargs):
        fed = in_process(Builder(tiny_config(**kwargs), log=lambda _: None)).rounds
        assert isinstance(fed, Federation)
        fed.sites = fed.transport.sites
        return fed

    return make


def test_sites_start_from_the_same_weights(federation):
    fed = federation()
    a, b = (s.module.model.state_dict() for s in fed.sites)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_fedmri_round_makes_encoders_identical_and_keeps_decoders(federation):
    fed = federation(algorithm="fedmri")
    after_local = {}

    def spy(site):
        fit = site.fit

        def recorded(*args, **kwargs):
            out = fit(*args, **kwargs)
            after_local[site.name] = {k: v.clone() for k, v in site.module.model.state_dict().items()}
            return out

        return recorded

    for site in fed.sites:
        site.fit = spy(site)
    fed.round(1)
    states = {s.name: s.module.model.state_dict() for s in fed.sites}
    names = list(states["fastmri"])
    encoder = [n for n in names if n.startswith("encoder.")]
    decoder = [n for n in names if n.startswith("decoder.")]
    for n in encoder:
        assert torch.equal(states["fastmri"][n], states["brats"][n])
        assert torch.equal(states["fastmri"][n], fed.server.global_state[n])
    assert any(not torch.equal(after_local["fastmri"][n], after_local["brats"][n]) for n in encoder)
    for site in states:
        for n in decoder:
            assert torch.equal(states[site][n], after_local[site][n])
    assert any(not torch.equal(states["fastmri"][n], states["brats"][n]) for n in decoder)


def test_singleset_shares_nothing(federation):
    fed = federation(algorithm="singleset")
    fed.round(1)
    assert fed.server.global_state == {}
    a, b = (s.module.model.state_dict() for s in fed.sites)
    assert any(not torch.equal(a[n], b[n]) for n in a if n.startswith("encoder."))


def test_fedavg_makes_whole_models_identical(federation):
    fed = federation(algorithm="fedavg")
    fed.round(1)
    a, b = (s.module.model.state_dict() for s in fed.sites)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_optimiser_state_survives_into_the_next_round(federation):
    fed = federation()
    site = fed.sites[0]
    fed.round(1)
    optimizer = site.module.optimizer
    steps_per_round = -(-site.data.num_train_slices // site.data.batch_size)
    first = next(iter(optimizer.state.values()))
    assert int(first["step"]) == steps_per_round
    square_avg = first["square_avg"].clone()
    fed.round(2)
    assert site.module.optimizer is optimizer
    state = next(iter(optimizer.state.values()))
    assert int(state["step"]) == 2 * steps_per_round
    assert not torch.equal(state["square_avg"], square_avg)


def test_contrastive_penalty_is_installed_from_the_second_round(federation):
    fed = federation(algorithm="fedmri")
    seen = {}

    def spy(client):
        plan = client.plan

        def recorded(rnd, payload, model, epochs):
            out = plan(rnd, payload, model, epochs)
            seen[(client.site, rnd)] = out.penalty
            return out

        return recorded

    for site in fed.sites:
        site.client.plan = spy(site.client)
    fed.round(1)
    fed.round(2)
    assert seen[("fastmri", 1)] is None and seen[("brats", 1)] is None
    assert seen[("fastmri", 2)] is not None and seen[("brats", 2)] is not None


def test_lr_schedule_steps_per_round(tiny_config):
    config = tiny_config()
    config.optim.lr, config.optim.lr_step_rounds, config.optim.lr_gamma = 1.0, 2, 0.5
    assert [config.optim.lr_at(r) for r in (1, 2, 3, 4, 5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    fed = Builder(config, log=lambda _: None).federation(None, None)
    assert [fed.lr(r) for r in (1, 2, 3, 4, 5)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_same_seed_same_result(federation):
    first, second = federation(), federation()
    first.round(1)
    second.round(1)
    for a, b in zip(first.sites, second.sites):
        sa, sb = a.module.model.state_dict(), b.module.model.state_dict()
        assert all(torch.equal(sa[n], sb[n]) for n in sa)


@pytest.mark.parametrize("algorithm", ["fedprox", "fedavg"])
def test_round_line_splits_the_loss_into_reconstruction_and_penalty(tiny_config, algorithm):
    """With a penalty (FedProx's proximal term) the round's line shows loss = rec + penalty; without
    one (FedAvg) the loss alone."""
    import re

    lines = []
    in_process(Builder(tiny_config(algorithm=algorithm), log=lines.append)).run()
    rounds = [line for line in lines if re.search(r"round +\d+/2 \|", line)]
    assert len(rounds) == 2, lines
    found = re.findall(r"loss (-?[\d.]+) = rec (-?[\d.]+) \+ penalty (-?[\d.]+)", "\n".join(rounds))
    if algorithm == "fedavg":
        assert found == [] and all(" loss " in line for line in rounds)
        return
    assert len(found) == 4  # two sites, two rounds
    for loss, rec, penalty in found:
        assert float(loss) == pytest.approx(float(rec) + float(penalty), abs=2e-4)
    assert any(float(penalty) > 0 for _, _, penalty in found)  # round 2 starts away from the global model
