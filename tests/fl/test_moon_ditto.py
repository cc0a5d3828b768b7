"""MOON's model-contrastive term and Ditto's global and personal models, against direct computations."""

import math

import pytest
import torch

from assembly.build import Builder
from assembly.config import validate_config
from assembly.setup import in_process
from fl.algorithms import Context, Payload, build_client
from fl.algorithms.ditto import DittoOptions
from fl.algorithms.moon import MOONOptions
from models.unet import Unet
from tests.conftest import save_hand_round, tiny_config_dict


def quiet(_):
    pass


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_moon_term_is_the_papers_loss_on_a_tiny_model():
    """mu * mean_i -log(e^{sim(z,z_g)/tau} / (e^{sim(z,z_g)/tau} + e^{sim(z,z_p)/tau})), z the spatial mean
    of the bottleneck under the live, the round's global and the site's previous model."""
    torch.manual_seed(0)
    live, glob, prev = (Unet(chans=2, num_pool_layers=2) for _ in range(3))
    mu, tau = 2.0, 0.3
    client = build_client("moon", MOONOptions(mu=mu, tau=tau), Context(sites=("a", "b")), "a")
    global_state = {n: t.clone() for n, t in glob.state_dict().items()}
    live.load_state_dict(global_state)  # the site loaded the round's global model
    assert client.plan(1, Payload(global_state), live, 1).penalty is None  # no previous local model yet
    client.load_state_dict({"previous": prev.state_dict()})
    penalty = client.plan(2, Payload(global_state), live, 1).penalty
    with torch.no_grad():  # the live model moves away from the global one during the fit
        for p in live.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(3, 1, 16, 16)
    features = live.encoder(x)[0]
    value = penalty(live, {"features": features, "input": x})

    with torch.no_grad():
        z = features.detach().mean(dim=(2, 3))
        z_g = glob.encoder(x)[0].mean(dim=(2, 3))
        z_p = prev.encoder(x)[0].mean(dim=(2, 3))
    expected = 0.0
    for i in range(3):
        pos = math.exp(float(_cosine(z[i : i + 1], z_g[i : i + 1])) / tau)
        neg = math.exp(float(_cosine(z[i : i + 1], z_p[i : i + 1])) / tau)
        expected += -math.log(pos / (pos + neg)) / 3
    assert float(value.detach()) == pytest.approx(mu * expected, rel=1e-5)
    value.backward()  # the term trains the live model only
    assert all(p.grad is not None for p in live.encoder.parameters())
    assert all(p.grad is None for p in (*glob.parameters(), *prev.parameters()))
    # The frozen copies are snapshots: changing the live model does not change z_glob.
    again = penalty(live, {"features": live.encoder(x)[0], "input": x})
    assert float(again.detach()) == pytest.approx(float(value.detach()))


def test_moon_keeps_each_sites_model_after_its_fit_as_the_next_negative(tiny_config):
    rounds = in_process(Builder(tiny_config(algorithm="moon", rounds=2), log=quiet)).rounds
    site = rounds.transport.sites[0]
    payload = rounds.server.payload(site.name, 1)
    site.fit(1, payload, 1, 1e-3)
    after = site.module.model.state_dict()
    assert site.client.previous.keys() == after.keys()
    assert all(torch.equal(site.client.previous[n], after[n]) for n in after)
    assert site.client.plan(2, payload, site.module.model, 1).penalty is not None


def test_moon_previous_models_survive_a_checkpoint(tiny_config, tmp_path):
    config = tiny_config(algorithm="moon", rounds=2)
    run = in_process(Builder(config, log=quiet))
    run.rounds.round(1)
    save_hand_round(run, tmp_path / "last.ckpt")
    again = in_process(Builder(validate_config(run.config), log=quiet))
    again.load(tmp_path / "last.ckpt")
    for site, other in zip(run.rounds.transport.sites, again.rounds.transport.sites, strict=True):
        previous = site.client.previous
        assert previous and previous.keys() == other.client.previous.keys()
        assert all(torch.equal(previous[n], other.client.previous[n]) for n in previous)


def test_moon_refuses_the_dual_domain_cascade(tmp_path):
    from utils.errors import UserError

    data = tiny_config_dict(tmp_path, algorithm="moon")
    data["model"]["kind"] = "dual_domain"
    with pytest.raises(UserError, match="fl.algorithm"):
        validate_config(data)


def test_ditto_penalty_is_half_lambda_squared_distance_to_the_received_global_model():
    torch.manual_seed(0)
    model, glob = Unet(chans=2, num_pool_layers=2), Unet(chans=2, num_pool_layers=2)
    received = {f"global/{n}": t.clone() for n, t in glob.state_dict().items()}
    client = build_client("ditto", DittoOptions(lam=0.7), Context(sites=("a", "b")), "a")
    plan = client.plan(1, Payload({}, received), model, 2)
    assert plan.companion.epochs == 1.0 and [p.epochs for p in plan.phases] == [2]
    with torch.no_grad():
        pairs = zip(model.parameters(), glob.parameters(), strict=True)
        expected = sum(((p - q) ** 2).sum() for p, q in pairs)
    assert float(plan.penalty(model, {}).detach()) == pytest.approx(0.5 * 0.7 * float(expected), rel=1e-5)
    assert all(torch.equal(plan.companion.state[n], t) for n, t in glob.state_dict().items())


def _run(tmp_path, algorithm, local_epochs, **ditto):
    data = tiny_config_dict(tmp_path / algorithm, algorithm=algorithm, rounds=2)
    data["fl"]["local_epochs"] = local_epochs
    if ditto:
        data["fl"]["ditto"] = ditto
    rounds = in_process(Builder(validate_config(data), log=quiet)).rounds
    for rnd in (1, 2):
        rounds.round(rnd)
    return rounds


def test_ditto_global_model_is_fedavgs_bit_for_bit_and_personal_models_differ(tmp_path):
    """With half of 2 local epochs on the global copy, Ditto's global model after two rounds is FedAvg's
    with 1 local epoch, bit for bit; the sites' own (personal) models differ from it and each other."""
    ditto = _run(tmp_path, "ditto", 2)
    fedavg = _run(tmp_path, "fedavg", 1)
    assert ditto.server.global_state == {}  # nothing travels through the shared path
    expected = fedavg.server.global_state
    assert ditto.server.model.keys() == expected.keys()
    assert all(torch.equal(ditto.server.model[n], expected[n]) for n in expected)
    personal = [s.module.model.state_dict() for s in ditto.transport.sites]
    weights = [n for n, _ in ditto.transport.sites[0].module.model.named_parameters()]
    for state in personal:
        assert not any(torch.equal(state[n], expected[n]) for n in weights)
    assert not any(torch.equal(personal[0][n], personal[1][n]) for n in weights)
    # Equal compute: 3 batches x 2 epochs = 6 steps, 3 on the global copy and 3 on the personal model.
    assert [s.last_steps for s in ditto.transport.sites] == [6, 6]
