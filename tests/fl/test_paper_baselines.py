"""The paper's baselines as their sources define them, at equal compute: Transfer-Site's cyclic order,
FL-MRCM's per-step target batches, the local step count of every algorithm, fixed masks."""

import numpy as np
import pytest
import torch

import fl.algorithms.flmrcm as flmrcm
from assembly.build import Builder, is_federated
from assembly.setup import in_process
from data import masks
from fl.algorithms.base import Context, Payload, head_names
from fl.algorithms.fedper import FedPer
from fl.algorithms.fedrep import FedRep
from fl.options import algorithm_names
from fl.references import TransferSite


def quiet(_):
    pass


def create_run(config):
    return in_process(Builder(config, log=quiet))


def sites_of(rounds):
    return rounds.transport.sites if hasattr(rounds, "server") else rounds.sites


def test_transfer_visits_every_site_in_the_seeded_order(tiny_config):
    run = create_run(tiny_config(algorithm="transfer", rounds=2, sites=3)).rounds
    assert isinstance(run, TransferSite)
    trained = []
    fit = run.trainer

    def trainer(epochs, is_fit):
        t = fit(epochs, is_fit)
        original = t.fit
        t.fit = lambda module, train_dataloaders: (
            trained.append(train_dataloaders) or original(module, train_dataloaders=train_dataloaders)
        )
        return t

    run.trainer = trainer
    run.round(1)
    run.round(2)
    orders = [run.order(1), run.order(2)]
    assert [name for _, name in run.visits] == orders[0] + orders[1]
    assert sorted(orders[0]) == sorted(run.site_names) == sorted(orders[1])
    rng = np.random.default_rng(__import__("utils.seeding").seeding.stable_seed(0, "transfer-order", 1))
    assert orders[0] == [run.site_names[i] for i in rng.permutation(3)]
    loaders = {s.name: s.data.train_dataloader() for s in run.sites}
    assert [next(n for n, ld in loaders.items() if ld is t) for t in trained] == orders[0] + orders[1]
    # every site tests the one model, which has seen every site
    states = [s.module.model.state_dict() for s in run.sites]
    for state in states[1:]:
        assert all(torch.equal(state[k], states[0][k]) for k in state)


def test_flmrcm_paper_step_feeds_source_and_target_features(tiny_config, monkeypatch):
    config = tiny_config(algorithm="flmrcm", rounds=1)
    assert config.fl.options().mode == "paper"
    rounds = create_run(config).rounds
    seen = []
    real_d, real_g = flmrcm.discriminator_loss, flmrcm.generator_loss

    def d_loss(disc, source, target):
        seen.append(("d", len(source), len(target), source.requires_grad, target.requires_grad))
        return real_d(disc, source, target)

    def g_loss(disc, source, target):
        seen.append(("g", len(source), len(target), source.requires_grad, target.requires_grad))
        return real_g(disc, source, target)

    monkeypatch.setattr(flmrcm, "discriminator_loss", d_loss)
    monkeypatch.setattr(flmrcm, "generator_loss", g_loss)
    summary = rounds.round(1)
    source, target = rounds.transport.sites  # the target is the last site
    steps = source.last_steps
    assert steps > 0 and len(seen) == 2 * steps
    assert all(e[0] == "d" and e[1] > 0 and e[2] > 0 and not e[3] and not e[4] for e in seen[::2])
    assert all(e[0] == "g" and e[1] > 0 and e[2] > 0 and e[3] and e[4] for e in seen[1::2])
    assert source.client.disc_steps == steps and target.client.disc_steps == 0
    assert summary[source.name]["status"] == "ok"


def test_flmrcm_paper_losses_follow_the_authors_label_convention():
    torch.manual_seed(0)
    disc = flmrcm.paper_discriminator(8, 4)
    s, t = torch.randn(3, 8), torch.randn(2, 8)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    src = torch.tensor([[1.0, 0.0]]).expand(3, 2)
    tgt = torch.tensor([[0.0, 1.0]]).expand(2, 2)
    d = 0.5 * (bce(disc(s), 1 - src) + bce(disc(t), 1 - tgt))
    g = 0.5 * (bce(disc(s), src) + bce(disc(t), tgt))
    assert torch.allclose(flmrcm.discriminator_loss(disc, s, t), d)
    assert torch.allclose(flmrcm.generator_loss(disc, s, t), g)
    assert disc(s).shape == (3, 2) and isinstance(disc[-1], torch.nn.LeakyReLU)


def test_flmrcm_paper_refuses_separate_processes(tiny_config):
    reason = flmrcm.FLMRCM.refusal("flower", flmrcm.FLMRCMOptions(mode="features"))
    assert "\n" not in reason and "mode: paper" in reason and reason.startswith("fl.algorithm: flmrcm ")
    paper, features = flmrcm.FLMRCMOptions(), flmrcm.FLMRCMOptions(mode="features")
    assert "fl.flmrcm.mode: paper" in flmrcm.FLMRCM.refusal("ddp_sites", paper)
    assert flmrcm.FLMRCM.refusal("ddp_sites", features) is None
    assert "fl.parallel: data" in flmrcm.FLMRCM.refusal("ddp_data", features)
    assert flmrcm.FLMRCM.refusal("in_process", paper) is None
    client = flmrcm.FLMRCMClient(flmrcm.FLMRCMOptions(), Context(sites=("a", "b")), "a")
    with pytest.raises(ValueError, match="one process") as err:
        client.plan(1, Payload({}), torch.nn.Linear(1, 1), 1)
    assert "\n" not in str(err.value)


def test_flmrcm_paper_discriminator_learning_rate_is_ten_times_the_networks():
    client = flmrcm.FLMRCMClient(flmrcm.FLMRCMOptions(), Context(sites=("a", "b"), lr=3e-4), "a")
    client._discriminator(16)
    assert client.disc_optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)
    assert isinstance(client.disc_optimizer, torch.optim.RMSprop)


@pytest.mark.parametrize("algorithm", [a for a in algorithm_names()])
def test_every_algorithm_takes_the_same_local_steps_per_round(tiny_config, algorithm):
    """At the defaults, every method takes local_epochs x batches optimiser steps per site and round
    (Ditto's global copy and personal model together)."""
    assert {"moon", "ditto"} <= set(algorithm_names())
    config = tiny_config(algorithm=algorithm, rounds=2)
    rounds = create_run(config).rounds
    counts: dict[str, int] = {}
    modules = {}
    if is_federated(algorithm):
        for site in rounds.transport.sites:
            modules[site.name] = site.module
    else:
        for name, module in rounds.modules.items():
            modules[name] = module
    for name, module in modules.items():
        optimizer = module.optimizer
        step = optimizer.step

        def counted(*args, _name=name, _step=step, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _step(*args, **kwargs)

        optimizer.step = counted
    rounds.round(1)
    counts.clear()
    rounds.round(2)  # round 2: every algorithm's full behaviour (penalties start in round 2)
    sites = rounds.transport.sites if is_federated(algorithm) else rounds.sites
    batches = {s.name: len(s.data.train_dataloader()) * config.fl.local_epochs for s in sites}
    if algorithm == "transfer_loo":  # a pooled model per site; its pool's batches are the others'
        expected = {g: len(rounds.pools[g].train_dataloader()) * config.fl.local_epochs for g in rounds.pools}
        assert counts == expected
    elif algorithm == "centralized":
        assert counts == {"all": sum(batches.values())}
    elif algorithm == "transfer":
        assert counts == {"all": sum(batches.values())}  # one visit of every site
    else:
        assert counts == batches


def test_fedrep_splits_the_rounds_steps_between_head_and_body(tiny_config):
    rounds = create_run(tiny_config(algorithm="fedrep", rounds=1)).rounds
    site = rounds.transport.sites[0]
    before = {n: p.detach().clone() for n, p in site.module.model.named_parameters()}
    steps_per_epoch = len(site.data.train_dataloader())
    seen = []
    step = site.module.optimizer.step

    def record(closure=None, **kwargs):
        def wrapped():  # Lightning's closure runs forward, backward and the step hook
            loss = closure()
            seen.append({n for n, p in site.module.model.named_parameters() if p.grad is not None})
            return loss

        return step(wrapped, **kwargs)

    site.module.optimizer.step = record
    rounds.round(1)
    head = head_names([n for n, _ in site.module.model.named_parameters()], "conv")
    k = round(0.5 * steps_per_epoch)
    assert len(seen) == steps_per_epoch
    assert all(s == head for s in seen[:k]) and all(s and not (s & head) for s in seen[k:])
    assert any(not torch.equal(before[n], p) for n, p in site.module.model.named_parameters() if n in head)


def test_head_defaults_follow_the_sources(unet_names):
    assert FedPer.default_head == "conv" and FedRep.default_head == "conv"
    server = FedPer(None, Context(sites=("a", "b")))
    assert set(server.shared_names(unet_names)) == set(unet_names.state_dict()) - {
        "decoder.head.weight",
        "decoder.head.bias",
    }


@pytest.fixture
def unet_names():
    from models.unet import Unet

    return Unet(in_chans=1, out_chans=1, chans=4, num_pool_layers=2)


def test_fixed_masks_are_one_per_site_for_training_and_test(tiny_config_file):
    import yaml

    from assembly.config import load_config

    path = tiny_config_file()
    data = yaml.safe_load(path.read_text())
    for site in data["sites"]:
        site["mask"]["fixed"] = True
    path.write_text(yaml.safe_dump(data))

    def seeds(dm):
        train = dm.datasets["train"]
        keys = [(0, 1, 0), (1, 2, 1), (len(train) - 1, 3, 0)]
        return [train.mask_seed(k) for k in keys] + [
            dm.datasets[s].mask_seed(i) for s in ("val", "test") for i in range(len(dm.datasets[s]))
        ]

    prepared = Builder(load_config(path), log=quiet).prepare_data()
    resumed = Builder(load_config(path), log=quiet).prepare_data()  # a resumed run builds them again
    for dm, again in zip(prepared, resumed):
        first = seeds(dm)
        assert len(set(first)) == 1 and seeds(again) == first
        sample = dm.datasets["train"][(0, 1, 0)]
        shape = tuple(sample["target"].shape[-2:])
        assert np.array_equal(
            dm.transform.mask_func(shape, first[0]), again.transform.mask_func(shape, first[0])
        )
    names = {dm.name: seeds(dm)[0] for dm in prepared}
    assert len(set(names.values())) == len(names)  # one mask per site, not one for all
    # without fixed, training masks are redrawn per sample and evaluation masks differ per slice
    plain = Builder(load_config(tiny_config_file()), log=quiet).prepare_data()[1]
    train = plain.datasets["train"]
    assert train.mask_seed((0, 1, 0)) != train.mask_seed((0, 2, 0))


def test_equispaced_fraction_lattice_stops_short_of_the_last_column_as_fastmri():
    width, accel, cf = 128, 4.0, 0.08
    num_low = round(width * cf)
    adjusted = accel * (num_low - width) / (num_low * accel - width)
    func = masks.create("equispaced_1d", acceleration=accel, center_fraction=cf)
    for seed in range(40):
        offset = np.random.default_rng(seed).integers(0, max(1, round(adjusted)))
        # fastMRI's EquispacedMaskFractionFunc, written out from its definition
        expected = np.zeros(width, dtype=bool)
        expected[np.around(np.arange(offset, width - 1, adjusted)).astype(np.uint)] = True
        pad = (width - num_low + 1) // 2
        expected[pad : pad + num_low] = True
        assert np.array_equal(func((4, width), seed)[0], expected), seed
    original = masks.create("equispaced_1d", acceleration=4, center_fraction=cf, exact_fraction=False)
    for seed in range(8):
        offset = np.random.default_rng(seed).integers(0, 4)
        expected = np.zeros(width, dtype=bool)
        expected[offset::4] = True  # fastMRI's EquispacedMaskFunc
        pad = (width - num_low + 1) // 2
        expected[pad : pad + num_low] = True
        assert np.array_equal(original((4, width), seed)[0], expected), seed
