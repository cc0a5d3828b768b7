"""FedMRI's contrastive term against a direct per-parameter computation through autograd."""

import pytest
import torch

from fl.strategies import FedMRI
from models.losses import contrastive_l1, reconstruction_loss
from models.unet import Unet


def tiny_encoders(k: int, seed: int = 0):
    torch.manual_seed(seed)
    nets = [Unet(chans=2, num_pool_layers=2) for _ in range(k + 2)]
    local, server, previous = nets[0], nets[1], nets[2:]
    return local, server, previous


def direct(local, server, previous):
    """The formula of REFERENCE.md section 1, one parameter at a time."""
    names = [n for n, _ in local.named_parameters() if n.startswith("encoder.")]
    live = dict(local.named_parameters())
    glob = dict(server.named_parameters())
    pos = sum(torch.norm(live[n] - glob[n].detach(), p=1) for n in names)
    neg = 0
    for net in previous:
        prev = dict(net.named_parameters())
        neg = neg + sum(torch.norm(live[n] - prev[n].detach(), p=1) for n in names)
    return pos / (neg + 1e-14)


def ours(local, server, previous):
    names = [n for n, _ in local.named_parameters() if n.startswith("encoder.")]
    live, glob = dict(local.named_parameters()), dict(server.named_parameters())
    negs = [[dict(net.named_parameters())[n] for n in names] for net in previous]
    return contrastive_l1([live[n] for n in names], [glob[n] for n in names], negs)


@pytest.mark.parametrize("k", [1, 4])
def test_value_and_gradient_equal_the_direct_computation(k):
    local, server, previous = tiny_encoders(k)
    expected = direct(local, server, previous)
    expected.backward()
    expected_grads = {n: p.grad.clone() for n, p in local.named_parameters() if p.grad is not None}
    local.zero_grad(set_to_none=True)
    value = ours(local, server, previous)
    value.backward()
    assert torch.allclose(value, expected, rtol=1e-6)
    assert expected_grads
    for name, grad in expected_grads.items():
        assert torch.allclose(dict(local.named_parameters())[name].grad, grad, rtol=1e-5, atol=1e-12), name
    assert all(p.grad is None for n, p in local.named_parameters() if n.startswith("decoder."))


def test_gradient_scales_with_upstream_factor():
    local, server, previous = tiny_encoders(2)
    (3.0 * ours(local, server, previous)).backward()
    g3 = [p.grad.clone() for n, p in local.named_parameters() if n.startswith("encoder.")]
    local.zero_grad(set_to_none=True)
    ours(local, server, previous).backward()
    g1 = [p.grad for n, p in local.named_parameters() if n.startswith("encoder.")]
    assert all(torch.allclose(a, 3 * b) for a, b in zip(g3, g1))


def test_positive_is_zero_right_after_aggregation():
    local, server, previous = tiny_encoders(2)
    server.load_state_dict(local.state_dict())
    assert ours(local, server, previous).item() == 0.0


def direct_penalty(model, global_state, previous_by_site, sites, beta):
    live = dict(model.named_parameters())
    names = list(global_state)
    pos = sum(torch.norm(live[n] - global_state[n], p=1) for n in names)
    neg = sum(torch.norm(live[n] - previous_by_site[s][n], p=1) for s in sites for n in names)
    return beta * pos / (neg + 1e-14)


@pytest.mark.parametrize("negatives", ["all", "self"])
def test_strategy_penalty_matches_direct_formula(negatives):
    from types import SimpleNamespace

    cfg = SimpleNamespace(fedmri=SimpleNamespace(lam=1.0, beta=100.0, negatives=negatives, start_round=2))
    strategy = FedMRI(cfg)
    torch.manual_seed(1)
    nets = {s: Unet(chans=2, num_pool_layers=2) for s in ("a", "b", "c")}
    shared = {
        s: {n: t.clone() for n, t in net.state_dict().items() if strategy.is_shared(n)}
        for s, net in nets.items()
    }
    global_state = strategy.aggregate(1, shared, {s: 1.0 for s in nets})
    model = Unet(chans=2, num_pool_layers=2)
    assert strategy.penalty("b", 1, model, global_state) is None  # before start_round
    penalty = strategy.penalty("b", 2, model, global_state)
    sites = ["a", "b", "c"] if negatives == "all" else ["b"]
    expected = direct_penalty(model, global_state, shared, sites, 100.0)
    assert torch.allclose(penalty(model), expected, rtol=1e-6)


def test_reconstruction_losses():
    a, b = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4) * 2
    assert reconstruction_loss("mse")(a, b).item() == 4.0
    assert reconstruction_loss("l1")(a, b).item() == 2.0
    with pytest.raises(ValueError):
        reconstruction_loss("ssim")
