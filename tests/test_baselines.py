"""The baselines as strategies: shared sets on the real U-Net, penalties, SCAFFOLD's drift correction."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from fl.strategies import (
    ALGORITHMS,
    FedBN,
    FedMRI,
    FedProx,
    FedRep,
    Scaffold,
    build_strategy,
    head_names,
    nbytes,
    weighted_average,
)
from models.unet import Unet

ALL = [
    "fedmri",
    "fedavg",
    "fedprox",
    "fedbn",
    "lgfedavg",
    "fedper",
    "fedrep",
    "scaffold",
    "flmrcm",
    "singleset",
    "centralized",
    "transfer",
]


def fl(algorithm="fedavg", **sections):
    """A stand-in for the config's ``fl`` section."""
    return SimpleNamespace(algorithm=algorithm, head=sections.pop("head", "stage"), **sections)


def shared(algorithm, model, **sections):
    names = list(model.state_dict())
    return build_strategy(fl(algorithm, **sections)).shared_names(names, model)


def test_registry_has_every_algorithm_once():
    assert list(ALGORITHMS) == ALL
    for name, cls in ALGORITHMS.items():
        assert cls.name == name and cls.__doc__ and len(cls.__doc__.splitlines()[0]) > 20


@pytest.fixture(scope="module")
def unet():
    return Unet(chans=2, num_pool_layers=4)


@pytest.fixture(scope="module")
def unet_bn():
    return Unet(chans=2, num_pool_layers=4, norm="batch")


def test_head_is_the_last_decoder_stage_or_the_output_conv(unet):
    names = list(unet.state_dict())
    stage = head_names(names, "stage")
    assert stage == {n for n in names if n.startswith(("decoder.up.3.", "decoder.head."))}
    assert head_names(names, "conv") == {"decoder.head.weight", "decoder.head.bias"}
    with pytest.raises(ValueError):
        head_names(["encoder.down.0.layers.0.weight"])


def test_shared_sets_on_the_unet(unet):
    names = list(unet.state_dict())
    encoder = [n for n in names if n.startswith("encoder.")]
    head = head_names(names, "stage")
    assert shared("fedmri", unet) == encoder
    for everything in ("fedavg", "fedprox", "scaffold", "flmrcm", "fedbn"):
        assert shared(everything, unet) == names, everything
    for nothing in ("singleset", "centralized", "transfer"):
        assert shared(nothing, unet) == [], nothing
    assert set(shared("lgfedavg", unet)) == head
    assert set(shared("fedper", unet)) == set(names) - head
    assert shared("fedrep", unet) == shared("fedper", unet)
    assert shared("lgfedavg", unet, head="conv") == ["decoder.head.weight", "decoder.head.bias"]
    whole = SimpleNamespace(share="whole")
    but_head = SimpleNamespace(share="all_but_head")
    assert shared("fedmri", unet, fedmri=whole) == names
    assert set(shared("fedmri", unet, fedmri=but_head)) == set(names) - head


def test_fedbn_equals_fedavg_under_parameter_free_instance_norm(unet):
    assert shared("fedbn", unet) == shared("fedavg", unet)


@pytest.mark.parametrize("norm", ["batch", "instance_affine"])
def test_fedbn_keeps_every_normalisation_tensor_local(norm):
    model = Unet(chans=2, num_pool_layers=4, norm=norm)
    names = list(model.state_dict())
    kept = set(names) - set(FedBN(fl("fedbn")).shared_names(names, model))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    per_layer = 5 if norm == "batch" else 2  # weight, bias (+ running mean, var, batch count)
    assert len(kept) == per_layer * len(norms) == per_layer * 22
    assert all(
        n.rsplit(".", 1)[1] in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        for n in kept
    )
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(f"{c}.weight" not in kept for c in convs)
    with pytest.raises(ValueError):
        FedBN(fl("fedbn")).shared_names(names)


def test_fedbn_aggregation_leaves_local_statistics_alone(unet_bn):
    strategy = FedBN(fl("fedbn"))
    names = strategy.shared_names(list(unet_bn.state_dict()), unet_bn)
    a = {n: t.clone() for n, t in unet_bn.state_dict().items()}
    b = {n: t.clone() + (1 if t.is_floating_point() else 2) for n, t in unet_bn.state_dict().items()}
    out = strategy.aggregate(
        1, {"a": {n: a[n] for n in names}, "b": {n: b[n] for n in names}}, {"a": 1, "b": 1}
    )
    assert set(out) == set(names)
    assert not any("running_mean" in n for n in out)
    conv = "encoder.down.0.layers.0.weight"
    assert torch.allclose(out[conv], a[conv] + 0.5)


def test_fedprox_penalty_value_and_gradient():
    torch.manual_seed(0)
    model = Unet(chans=2, num_pool_layers=2)
    global_state = {n: t + 0.1 * torch.randn_like(t) for n, t in model.state_dict().items()}
    strategy = FedProx(fl("fedprox", fedprox=SimpleNamespace(mu=0.3)))
    penalty = strategy.penalty("a", 1, model, global_state)
    value = penalty(model, {})
    params = dict(model.named_parameters())
    expected = 0.15 * sum(((params[n] - global_state[n]) ** 2).sum() for n in params)
    assert torch.allclose(value, expected, rtol=1e-5)
    value.backward()
    for n, p in params.items():
        assert torch.allclose(p.grad, 0.3 * (p.detach() - global_state[n]), atol=1e-7), n
    assert (
        FedProx(fl("fedprox", fedprox=SimpleNamespace(mu=0.0))).penalty("a", 1, model, global_state) is None
    )


class Scalar(nn.Module):
    """A model with one vector parameter, for the quadratic clients."""

    def __init__(self, value):
        super().__init__()
        self.w = nn.Parameter(value.clone())


def run_quadratic(strategy, rounds=150, steps=10, lr=0.1):
    """Two clients f_i(w) = 1/2 sum a_i (w - m_i)^2 with different curvatures, trained by local SGD."""
    curvature = {"a": torch.tensor([1.0, 0.2]), "b": torch.tensor([0.1, 2.0])}
    centre = {"a": torch.tensor([1.0, -1.0]), "b": torch.tensor([-2.0, 3.0])}
    optimum = sum(curvature[s] * centre[s] for s in "ab") / sum(curvature[s] for s in "ab")
    global_state = {"w": torch.zeros(2)}
    for rnd in range(1, rounds + 1):
        updates = {}
        for site in "ab":
            model = Scalar(global_state["w"])
            penalty = strategy.penalty(site, rnd, model, global_state)
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
            for _ in range(steps):
                optimizer.zero_grad()
                loss = 0.5 * (curvature[site] * (model.w - centre[site]) ** 2).sum()
                if penalty is not None:
                    loss = loss + penalty(model, {})
                loss.backward()
                strategy.on_local_step(site, model)
                optimizer.step()
            strategy.after_local_fit(site, rnd, model, global_state, steps=steps, lr=lr)
            updates[site] = {"w": model.w.detach().clone()}
        global_state = strategy.aggregate(rnd, updates, {"a": 1.0, "b": 1.0})
    return global_state["w"], optimum


def test_scaffold_corrects_the_client_drift_of_fedavg_on_quadratic_clients():
    fedavg, optimum = run_quadratic(ALGORITHMS["fedavg"]())
    scaffold, _ = run_quadratic(Scaffold(fl("scaffold", scaffold=SimpleNamespace(variates="gradients"))))
    # FedAvg with 10 local steps converges to a biased point; SCAFFOLD to the optimum of the average.
    assert (fedavg - optimum).abs().max() > 0.3
    assert torch.allclose(scaffold, optimum, atol=1e-4)


def test_scaffold_variates_from_gradients_equal_the_papers_option_two_under_sgd():
    gradients = Scaffold(fl("scaffold", scaffold=SimpleNamespace(variates="gradients")))
    delta = Scaffold(fl("scaffold", scaffold=SimpleNamespace(variates="delta")))
    w1, optimum = run_quadratic(gradients, rounds=5)
    w2, _ = run_quadratic(delta, rounds=5)
    assert torch.allclose(w1, w2, atol=1e-5)
    for site in "ab":
        assert torch.allclose(gradients.c_local[site]["w"], delta.c_local[site]["w"], atol=1e-4)
    # The server variate is the mean of the client variates when every client takes part.
    mean = (gradients.c_local["a"]["w"] + gradients.c_local["b"]["w"]) / 2
    assert torch.allclose(gradients.c["w"], mean, atol=1e-6)


def test_scaffold_traffic_doubles_fedavg_and_state_round_trips():
    strategy = Scaffold(fl("scaffold"))
    run_quadratic(strategy, rounds=2)
    model_bytes = nbytes([torch.zeros(2)])
    # Each round a client received c and sent its variate change: one model's worth each way.
    assert strategy.pop_traffic("a") == (2 * model_bytes, 2 * model_bytes)
    strategy.penalty("a", 3, Scalar(torch.zeros(2)), {"w": torch.zeros(2)})
    assert strategy.pop_traffic("a") == (0, model_bytes)  # c received at the start of the fit
    restored = Scaffold(fl("scaffold"))
    restored.load_state_dict(strategy.state_dict())
    assert torch.equal(restored.c["w"], strategy.c["w"])
    assert torch.equal(restored.c_local["b"]["w"], strategy.c_local["b"]["w"])


def test_fedrep_plan_trains_the_head_then_the_body(unet):
    strategy = FedRep(fl("fedrep", fedrep=SimpleNamespace(head_epochs=3)))
    head, body = strategy.local_plan("a", 1, 2, unet)
    params = [n for n, _ in unet.named_parameters()]
    in_head = head_names(params)
    assert (head.epochs, body.epochs) == (3, 2)
    assert {n for n in params if head.trains(n)} == in_head
    assert {n for n in params if body.trains(n)} == set(params) - in_head


def test_fedmri_negatives_all_costs_k_encoders_received_self_costs_nothing():
    torch.manual_seed(0)
    sites = ["a", "b", "c"]
    model = Unet(chans=2, num_pool_layers=2)
    for negatives, extra in (("all", 2), ("self", 0)):
        strategy = FedMRI(fl("fedmri", fedmri=SimpleNamespace(negatives=negatives)))
        names = strategy.shared_names(list(model.state_dict()), model)
        encoder = {n: model.state_dict()[n].clone() for n in names}
        global_state = strategy.aggregate(1, {s: encoder for s in sites}, {s: 1.0 for s in sites})
        assert strategy.penalty("a", 1, model, global_state) is None
        assert strategy.pop_traffic("a") == (0, 0)
        assert strategy.penalty("a", 2, model, global_state) is not None
        # Plus the global encoder counted by the federation: K encoders in all under ``all``.
        assert strategy.pop_traffic("a") == (0, extra * nbytes(global_state.values()))


def test_weighted_average_of_every_strategy_is_the_default_arithmetic():
    updates = {"a": {"w": torch.tensor([1.0, 3.0])}, "b": {"w": torch.tensor([3.0, 7.0])}}
    expected = weighted_average(updates, {"a": 3.0, "b": 1.0})
    assert torch.allclose(expected["w"], torch.tensor([1.5, 4.0]))
    for name in ("fedavg", "fedprox", "fedbn", "lgfedavg", "fedper", "fedrep", "scaffold", "flmrcm"):
        out = build_strategy(fl(name)).aggregate(1, updates, {"a": 3.0, "b": 1.0})
        assert torch.equal(out["w"], expected["w"]), name
