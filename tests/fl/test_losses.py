"""FedMRI's contrastive term against a direct per-parameter computation through autograd."""

import pytest
import torch

from fl.algorithms import Context, build_client
from fl.algorithms.fedmri import FedMRI, FedMRIOptions
from fl.algorithms.fedmri.term import ContrastiveL1, contrastive_l1
from models.losses import reconstruction_loss
from models.unet import Unet


def tiny_encoders(k: int, seed: int = 0):
    torch.manual_seed(seed)
    nets = [Unet(chans=2, num_pool_layers=2) for _ in range(k + 2)]
    local, server, previous = nets[0], nets[1], nets[2:]
    return local, server, previous


def direct(local, server, previous):
    """The FedMRI formula of README's "The method, as implemented", one parameter at a time."""
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


def fedmri_after_round_one(nets, **options):
    """FedMRI's server and clients after a first round in which site s sent ``nets[s]``'s encoder."""
    options = FedMRIOptions(**options)
    context = Context(sites=tuple(nets))
    server = FedMRI(options, context)
    server.setup(next(iter(nets.values())))
    clients = {s: build_client("fedmri", options, context, s) for s in nets}
    shared = {s: {n: net.state_dict()[n].clone() for n in server.global_state} for s, net in nets.items()}
    replies = {
        s: clients[s].reply(1, server.payload(s, 1), nets[s], shared[s], steps=1, lr=1.0) for s in nets
    }
    server.aggregate(1, replies, {s: 1.0 for s in nets})
    return server, clients, shared


@pytest.mark.parametrize("negatives", ["all", "self"])
def test_fedmri_penalty_matches_direct_formula(negatives):
    torch.manual_seed(1)
    nets = {s: Unet(chans=2, num_pool_layers=2) for s in ("a", "b", "c")}
    server, clients, shared = fedmri_after_round_one(
        nets, lam=1.0, beta=100.0, negatives=negatives, start_round=2
    )
    global_state = server.global_state
    model = Unet(chans=2, num_pool_layers=2)
    assert clients["b"].plan(1, server.payload("b", 1), model, 1).penalty is None  # before start_round
    penalty = clients["b"].plan(2, server.payload("b", 2), model, 1).penalty
    sites = ["a", "b", "c"] if negatives == "all" else ["b"]
    expected = direct_penalty(model, global_state, shared, sites, 100.0)
    assert torch.allclose(penalty(model), expected, rtol=1e-6)


def test_reconstruction_losses():
    a, b = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4) * 2
    assert reconstruction_loss("mse")(a, b).item() == 4.0
    assert reconstruction_loss("l1")(a, b).item() == 2.0
    with pytest.raises(ValueError):
        reconstruction_loss("ssim")


def encoder_lists(local, server, previous):
    names = [n for n, _ in local.named_parameters() if n.startswith("encoder.")]
    live, glob = dict(local.named_parameters()), dict(server.named_parameters())
    negs = [[dict(net.named_parameters())[n].detach() for n in names] for net in previous]
    return [live[n] for n in names], [glob[n].detach() for n in names], negs


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096, None])
def test_chunked_term_equals_the_direct_computation(chunk):
    local, server, previous = tiny_encoders(3, seed=2)
    params, anchor, negatives = encoder_lists(local, server, previous)
    expected = direct(local, server, previous)
    expected_grads = torch.autograd.grad(expected, params)
    term = ContrastiveL1(anchor, negatives, chunk=chunk)
    for _ in range(2):  # the second call reuses the stacked references and chunk views
        value = term(params)
        grads = torch.autograd.grad(value, params)
        assert torch.allclose(value, expected, rtol=1e-6)
        for got, want in zip(grads, expected_grads):
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-12)


def test_term_follows_parameter_updates():
    local, server, previous = tiny_encoders(2, seed=3)
    params, anchor, negatives = encoder_lists(local, server, previous)
    term = ContrastiveL1(anchor, negatives, chunk=50)
    before = term(params).detach()
    with torch.no_grad():
        for p in params:
            p.add_(0.05)
    after = term(params)
    assert not torch.equal(before, after.detach())
    assert torch.allclose(after, direct(local, server, previous), rtol=1e-6)


def test_two_evaluations_before_one_backward_keep_their_own_gradients():
    local, server, previous = tiny_encoders(2, seed=4)
    params, anchor, negatives = encoder_lists(local, server, previous)
    term = ContrastiveL1(anchor, negatives, chunk=64)

    def shift(amount):
        with torch.no_grad():
            params[0].add_(amount)

    single = torch.autograd.grad(term(params), params)
    shift(1.0)  # the first tensor now has other signs
    shifted = torch.autograd.grad(term(params), params)
    shift(-1.0)
    first = term(params)
    shift(1.0)
    second = term(params)
    both = torch.autograd.grad(first + second, params)
    assert any(not torch.allclose(a, b) for a, b in zip(single, shifted))
    for b, s, t in zip(both, single, shifted):
        assert torch.allclose(b, s + t, rtol=1e-5, atol=1e-12)


def test_channels_last_parameters_give_the_same_value_and_gradient_in_their_layout():
    local, server, previous = tiny_encoders(2, seed=5)
    params, anchor, negatives = encoder_lists(local, server, previous)
    expected = ContrastiveL1(anchor, negatives, chunk=30)(params)
    expected_grads = torch.autograd.grad(expected, params)
    local.to(memory_format=torch.channels_last)
    params, _, _ = encoder_lists(local, server, previous)
    assert any(not p.is_contiguous() for p in params)
    value = ContrastiveL1(anchor, negatives, chunk=30)(params)
    grads = torch.autograd.grad(value, params)
    assert torch.allclose(value, expected, rtol=1e-6)
    for p, got, want in zip(params, grads, expected_grads):
        assert torch.allclose(got, want, rtol=1e-6, atol=1e-12)
        for layout in (torch.contiguous_format, torch.channels_last):
            assert got.is_contiguous(memory_format=layout) == p.is_contiguous(memory_format=layout)


def test_references_follow_the_parameters_to_another_dtype():
    """A stand-in for a model that moves to a GPU after the term was built."""
    local, server, previous = tiny_encoders(2, seed=6)
    params, anchor, negatives = encoder_lists(local, server, previous)
    term = ContrastiveL1(anchor, negatives)
    term(params)
    local.double()
    params, _, _ = encoder_lists(local, server, previous)
    value = term(params)
    assert value.dtype == torch.float64
    assert torch.allclose(value, direct(local, server, previous).double(), rtol=1e-6)


def test_half_precision_parameters_keep_float32_sums():
    local, server, previous = tiny_encoders(2, seed=7)
    expected = direct(local, server, previous)
    local.bfloat16()
    params, anchor, negatives = encoder_lists(local, server, previous)
    value = ContrastiveL1(anchor, negatives, chunk=100)(params)
    assert value.dtype == torch.bfloat16
    reference = direct(local, server, previous)  # bf16 parameters against the float32 references
    assert torch.allclose(value.float(), reference.float(), rtol=1e-2)
    assert torch.allclose(value.float(), expected, rtol=5e-2)


def test_references_follow_the_parameters_to_another_device():
    """Lightning moves a module to its accelerator when a fit starts ("meta" stands in for a GPU)."""
    local, server, previous = tiny_encoders(2, seed=8)
    params, anchor, negatives = encoder_lists(local, server, previous)
    term = ContrastiveL1(anchor, negatives)
    term(params)
    local.to("meta")
    params, _, _ = encoder_lists(local, server, previous)
    value = term(params)
    grads = torch.autograd.grad(value, params)
    assert value.device.type == "meta" and all(g.device.type == "meta" for g in grads)


def test_the_chunk_loop_gives_back_the_threads_it_borrows():
    local, server, previous = tiny_encoders(2, seed=9)
    params, anchor, negatives = encoder_lists(local, server, previous)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        value = ContrastiveL1(anchor, negatives, chunk=50)(params)
        assert torch.get_num_threads() == 2
        assert torch.allclose(value, direct(local, server, previous), rtol=1e-6)
    finally:
        torch.set_num_threads(threads)


def test_the_term_and_aggregation_keep_float32_under_bf16_autocast():
    """trainer.precision bf16-mixed runs the training step under autocast; the contrastive term and the
    server's average must still sum in float32 (they see float32 parameters and use no autocast op)."""
    from fl.aggregation import weighted_average

    local, server, previous = tiny_encoders(3, seed=11)
    params, anchor, negatives = encoder_lists(local, server, previous)
    plain = ContrastiveL1(anchor, negatives)(params)
    plain_grads = torch.autograd.grad(plain, params)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = ContrastiveL1(anchor, negatives)(params)
        grads = torch.autograd.grad(value, params)
        updates = {str(i): dict(net.state_dict()) for i, net in enumerate(previous)}
        average = weighted_average(updates, {str(i): 1.0 + i for i in range(len(previous))})
    assert value.dtype == torch.float32 and torch.equal(value, plain)
    assert all(g.dtype == torch.float32 and torch.equal(g, p) for g, p in zip(grads, plain_grads))
    expected = weighted_average(updates, {str(i): 1.0 + i for i in range(len(previous))})
    assert all(average[k].dtype == torch.float32 and torch.equal(average[k], expected[k]) for k in expected)
