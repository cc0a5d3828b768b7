"""The baselines as algorithms: shared sets on the real U-Net, penalties, SCAFFOLD's drift correction."""

from pathlib import Path

import pytest
import torch
from torch import nn

import fl.algorithms
from fl.aggregation import nbytes, weighted_average
from fl.algorithms import ALGORITHMS, Context, Payload, Reply, build_client, build_server
from fl.algorithms.base import head_names
from fl.options import algorithm_names
from fl.references import REFERENCES
from models.unet import Unet

# The registered names, read from the registry; the tests below check the registry against the files.
ALL = algorithm_names()


def options(algorithm, **values):
    """The algorithm's options section (``fl.<algorithm>``) with ``values``, or None if it has none."""
    cls = ALGORITHMS[algorithm].Options
    assert cls is not None or not values, algorithm
    return cls(**values) if cls is not None else None


def context(head="stage", sites=("a", "b")):
    return Context(sites=tuple(sites), head=head)


def server(algorithm, head="stage", **values):
    """The algorithm's server half, as a config with ``fl.<algorithm>: values`` builds it."""
    return build_server(algorithm, options(algorithm, **values), context(head))


def client(algorithm, site="a", head="stage", **values):
    """The algorithm's site half for ``site``."""
    return build_client(algorithm, options(algorithm, **values), context(head), site)


def shared(algorithm, model, head="stage", **values):
    return server(algorithm, head, **values).shared_names(model)


def test_registry_has_every_algorithm_once():
    assert len(set(ALL)) == len(ALL) == len(ALGORITHMS) + len(REFERENCES)
    assert list(ALGORITHMS) + list(REFERENCES) == ALL
    assert set(REFERENCES) == {"centralized", "transfer", "transfer_loo"}
    # Every module of fl/algorithms/ but the shared ones defines one registered algorithm.
    folder = Path(fl.algorithms.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if p.is_dir()}
    modules -= {"__init__", "base", "heads", "__pycache__"}
    assert {cls.__module__.split(".")[2] for cls in ALGORITHMS.values()} >= modules
    assert {"fedmri", "fedavg", "fedprox", "fedbn", "lgfedavg", "fedper", "fedrep", "scaffold", "moon",
            "ditto", "flmrcm", "singleset"} <= set(ALGORITHMS)  # fmt: skip
    for name, cls in [*ALGORITHMS.items(), *REFERENCES.items()]:
        assert cls.name == name and cls.__doc__ and len(cls.__doc__.splitlines()[0]) > 20
    for cls in ALGORITHMS.values():  # the site half is the algorithm's own or the plain default
        assert cls.client.__doc__ and len(cls.client.__doc__.splitlines()[0]) > 20


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
    assert shared("singleset", unet) == []
    # The references pool data instead: no server half, no shared tensors.
    assert not {"centralized", "transfer"} & set(ALGORITHMS)
    assert set(shared("lgfedavg", unet)) == head
    assert set(shared("fedper", unet)) == set(names) - head
    assert shared("fedrep", unet) == shared("fedper", unet)
    assert shared("lgfedavg", unet, head="conv") == ["decoder.head.weight", "decoder.head.bias"]
    assert shared("fedmri", unet, share="whole") == names
    # FedMRI's all_but_head is the authors' except_last: only the 1x1 output conv stays local.
    conv = {"decoder.head.weight", "decoder.head.bias"}
    assert set(shared("fedmri", unet, head=None, share="all_but_head")) == set(names) - conv
    assert set(shared("fedmri", unet, head="stage", share="all_but_head")) == set(names) - head


def test_fedbn_equals_fedavg_under_parameter_free_instance_norm(unet):
    assert shared("fedbn", unet) == shared("fedavg", unet)


@pytest.mark.parametrize("norm", ["batch", "instance_affine"])
def test_fedbn_keeps_every_normalisation_tensor_local(norm):
    model = Unet(chans=2, num_pool_layers=4, norm=norm)
    names = list(model.state_dict())
    kept = set(names) - set(server("fedbn").shared_names(model))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    per_layer = 5 if norm == "batch" else 2  # weight, bias (+ running mean, var, batch count)
    assert len(kept) == per_layer * len(norms) == per_layer * 22
    assert all(
        n.rsplit(".", 1)[1] in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        for n in kept
    )
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(f"{c}.weight" not in kept for c in convs)


def test_fedbn_aggregation_leaves_local_statistics_alone(unet_bn):
    fedbn = server("fedbn")
    fedbn.setup(unet_bn)
    names = fedbn.shared_names(unet_bn)
    assert list(fedbn.global_state) == names
    a = {n: t.clone() for n, t in unet_bn.state_dict().items()}
    b = {n: t.clone() + (1 if t.is_floating_point() else 2) for n, t in unet_bn.state_dict().items()}
    replies = {"a": Reply({n: a[n] for n in names}), "b": Reply({n: b[n] for n in names})}
    fedbn.aggregate(1, replies, {"a": 1, "b": 1})
    out = fedbn.global_state
    assert set(out) == set(names)
    assert not any("running_mean" in n for n in out)
    conv = "encoder.down.0.layers.0.weight"
    assert torch.allclose(out[conv], a[conv] + 0.5)


def test_fedprox_penalty_value_and_gradient():
    torch.manual_seed(0)
    model = Unet(chans=2, num_pool_layers=2)
    global_state = {n: t + 0.1 * torch.randn_like(t) for n, t in model.state_dict().items()}
    penalty = client("fedprox", mu=0.3).plan(1, Payload(global_state), model, 1).penalty
    value = penalty(model, {})
    params = dict(model.named_parameters())
    expected = 0.15 * sum(((params[n] - global_state[n]) ** 2).sum() for n in params)
    assert torch.allclose(value, expected, rtol=1e-5)
    value.backward()
    for n, p in params.items():
        assert torch.allclose(p.grad, 0.3 * (p.detach() - global_state[n]), atol=1e-7), n
    assert client("fedprox", mu=0.0).plan(1, Payload(global_state), model, 1).penalty is None


class Scalar(nn.Module):
    """A model with one vector parameter, for the quadratic clients."""

    def __init__(self, value):
        super().__init__()
        self.w = nn.Parameter(value.clone())


class Quadratic:
    """A server half and one client half per site, run on quadratic clients by :func:`run_quadratic`."""

    def __init__(self, algorithm, **values):
        self.server = server(algorithm, **values)
        self.clients = {site: client(algorithm, site, **values) for site in "ab"}
        self.server.setup(Scalar(torch.zeros(2)))
        self.payloads: dict[str, Payload] = {}
        self.replies: dict[str, Reply] = {}


def run_quadratic(algorithm, rounds=150, steps=10, lr=0.1):
    """Two clients f_i(w) = 1/2 sum a_i (w - m_i)^2 with different curvatures, trained by local SGD."""
    curvature = {"a": torch.tensor([1.0, 0.2]), "b": torch.tensor([0.1, 2.0])}
    centre = {"a": torch.tensor([1.0, -1.0]), "b": torch.tensor([-2.0, 3.0])}
    optimum = sum(curvature[s] * centre[s] for s in "ab") / sum(curvature[s] for s in "ab")
    srv = algorithm.server
    for rnd in range(1, rounds + 1):
        replies = {}
        for site in "ab":
            payload = algorithm.payloads[site] = srv.payload(site, rnd)
            model = Scalar(payload.global_state["w"])
            plan = algorithm.clients[site].plan(rnd, payload, model, epochs=1)
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
            for _ in range(steps):
                optimizer.zero_grad()
                loss = 0.5 * (curvature[site] * (model.w - centre[site]) ** 2).sum()
                if plan.penalty is not None:
                    loss = loss + plan.penalty(model, {})
                loss.backward()
                if plan.after_backward is not None:
                    plan.after_backward(model)
                optimizer.step()
            shared = {"w": model.w.detach().clone()}
            replies[site] = algorithm.clients[site].reply(rnd, payload, model, shared, steps=steps, lr=lr)
        algorithm.replies = replies
        srv.aggregate(rnd, replies, {"a": 1.0, "b": 1.0})
    return srv.global_state["w"], optimum


def test_scaffold_corrects_the_client_drift_of_fedavg_on_quadratic_clients():
    fedavg, optimum = run_quadratic(Quadratic("fedavg"))
    scaffold, _ = run_quadratic(Quadratic("scaffold", variates="gradients"))
    # FedAvg with 10 local steps converges to a biased point; SCAFFOLD to the optimum of the average.
    assert (fedavg - optimum).abs().max() > 0.3
    assert torch.allclose(scaffold, optimum, atol=1e-4)


def test_scaffold_variates_from_gradients_equal_the_papers_option_two_under_sgd():
    gradients = Quadratic("scaffold", variates="gradients")
    delta = Quadratic("scaffold", variates="delta")
    w1, optimum = run_quadratic(gradients, rounds=5)
    w2, _ = run_quadratic(delta, rounds=5)
    assert torch.allclose(w1, w2, atol=1e-5)
    for site in "ab":
        assert torch.allclose(
            gradients.clients[site].c_local["w"], delta.clients[site].c_local["w"], atol=1e-4
        )
    # The server variate is the mean of the client variates when every client takes part.
    mean = (gradients.clients["a"].c_local["w"] + gradients.clients["b"].c_local["w"]) / 2
    assert torch.allclose(gradients.server.c["w"], mean, atol=1e-6)


def test_scaffold_traffic_doubles_fedavg_and_state_round_trips():
    scaffold, fedavg = Quadratic("scaffold"), Quadratic("fedavg")
    run_quadratic(scaffold, rounds=2)
    run_quadratic(fedavg, rounds=2)
    model_bytes = nbytes([torch.zeros(2)])
    # FedAvg: the global model down, the local one up.
    assert (fedavg.payloads["a"].nbytes, fedavg.replies["a"].nbytes) == (model_bytes, model_bytes)
    # SCAFFOLD: besides, c down and the variate change up, one model's worth each way.
    assert (scaffold.payloads["a"].nbytes, scaffold.replies["a"].nbytes) == (2 * model_bytes, 2 * model_bytes)
    restored = server("scaffold")
    restored.load_state_dict(scaffold.server.state_dict())
    assert torch.equal(restored.c["w"], scaffold.server.c["w"])
    assert torch.equal(restored.global_state["w"], scaffold.server.global_state["w"])
    site = client("scaffold", "b")
    site.load_state_dict(scaffold.clients["b"].state_dict())
    assert torch.equal(site.c_local["w"], scaffold.clients["b"].c_local["w"])


def test_fedrep_plan_trains_the_head_then_the_body(unet):
    """The head's steps and the body's steps split the round's fl.local_epochs (equal compute)."""
    fedrep = client("fedrep", head_epochs=0.25)
    head, body = fedrep.plan(1, Payload({}), unet, 2).phases
    params = [n for n, _ in unet.named_parameters()]
    in_head = head_names(params)
    assert (head.epochs, body.epochs) == (0.25, 1.75)
    assert {n for n in params if head.trains(n)} == in_head
    assert {n for n in params if body.trains(n)} == set(params) - in_head
    # Without fl.head the head is the paper's final layer: the 1x1 output conv.
    own = build_client("fedrep", options("fedrep"), Context(sites=("a", "b")), "a")
    head, body = own.plan(1, Payload({}), unet, 1).phases
    assert (head.epochs, body.epochs) == (0.5, 0.5)
    assert {n for n in params if head.trains(n)} == head_names(params, "conv")
    for too_many in (2, 3.5):
        with pytest.raises(ValueError, match="fl.fedrep.head_epochs"):
            client("fedrep", head_epochs=too_many).plan(1, Payload({}), unet, 2)


def test_fedmri_negatives_all_costs_k_encoders_received_self_costs_nothing():
    torch.manual_seed(0)
    sites = ["a", "b", "c"]
    model = Unet(chans=2, num_pool_layers=2)
    for negatives, extra in (("all", 2), ("self", 0)):
        fedmri = build_server("fedmri", options("fedmri", negatives=negatives), context(sites=sites))
        fedmri.setup(model)
        clients = {s: build_client("fedmri", fedmri.options, context(sites=sites), s) for s in sites}
        payload = fedmri.payload("a", 1)
        assert clients["a"].plan(1, payload, model, 1).penalty is None
        assert payload.nbytes == nbytes(fedmri.global_state.values())  # the global encoder only
        replies = {}
        for s in sites:
            encoder = {n: t.clone() for n, t in fedmri.global_state.items()}
            replies[s] = clients[s].reply(1, fedmri.payload(s, 1), model, encoder, steps=1, lr=1.0)
        fedmri.aggregate(1, replies, {s: 1.0 for s in sites})
        payload = fedmri.payload("a", 2)
        assert clients["a"].plan(2, payload, model, 1).penalty is not None
        # The global encoder plus the others' previous ones: K encoders in all under ``all``.
        assert payload.nbytes == (1 + extra) * nbytes(fedmri.global_state.values())


def test_weighted_average_of_every_algorithm_is_the_default_arithmetic():
    updates = {"a": {"w": torch.tensor([1.0, 3.0])}, "b": {"w": torch.tensor([3.0, 7.0])}}
    expected = weighted_average(updates, {"a": 3.0, "b": 1.0})
    assert torch.allclose(expected["w"], torch.tensor([1.5, 4.0]))
    for name in ("fedavg", "fedprox", "fedbn", "lgfedavg", "fedper", "fedrep", "scaffold", "moon", "flmrcm"):
        srv = server(name)
        srv.aggregate(1, {s: Reply(u) for s, u in updates.items()}, {"a": 3.0, "b": 1.0})
        assert torch.equal(srv.global_state["w"], expected["w"]), name
