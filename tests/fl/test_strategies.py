"""The algorithm seam: shared sets on the real U-Net, aggregation arithmetic, and the site half's state."""

import pytest
import torch

from fl.aggregation import FlatAverager, weighted_average
from fl.algorithms import ALGORITHMS, Context, Payload, Reply, build_client, build_server
from fl.algorithms.fedavg import FedAvg
from fl.algorithms.fedmri import FedMRI, FedMRIOptions
from fl.algorithms.singleset import SingleSet
from models.unet import Unet


@pytest.fixture
def model():
    return Unet(chans=2, num_pool_layers=4)


def fedmri(**options) -> FedMRI:
    return FedMRI(FedMRIOptions(**options), Context())


def test_fedmri_shares_exactly_the_encoder(model):
    names = list(model.state_dict())
    shared = fedmri().shared_names(model)
    assert shared == [n for n in names if n.startswith("encoder.")]
    assert shared and not any(n.startswith("decoder.") for n in shared)
    net = Unet(chans=32, num_pool_layers=4)
    state = net.state_dict()
    assert sum(state[n].numel() for n in fedmri().shared_names(net)) == 4_709_664


def test_fedavg_shares_everything_singleset_nothing(model):
    names = list(model.state_dict())
    assert FedAvg(None, Context()).shared_names(model) == names
    assert SingleSet(None, Context()).shared_names(model) == []


def test_registry():
    assert {"fedmri", "fedavg", "singleset"} <= set(ALGORITHMS)
    assert ALGORITHMS["fedmri"] is FedMRI and ALGORITHMS["fedmri"].Options is FedMRIOptions


def test_weighted_average_arithmetic():
    updates = {
        "a": {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)},
        "b": {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(6)},
    }
    uniform = weighted_average(updates, {"a": 1.0, "b": 1.0})
    assert torch.equal(uniform["w"], torch.tensor([2.0, 4.0]))
    assert uniform["n"].dtype == torch.int64 and uniform["n"].item() == 4  # 4.5 rounds to even
    skewed = weighted_average(updates, {"a": 3.0, "b": 1.0})
    assert torch.allclose(skewed["w"], torch.tensor([1.5, 3.0]))
    with pytest.raises(ValueError):
        weighted_average(updates, {"a": 0.0, "b": 0.0})


def test_fedmri_aggregation_keeps_previous_local_encoders():
    server = fedmri()
    replies = {"a": Reply({"encoder.x": torch.zeros(3)}), "b": Reply({"encoder.x": torch.ones(3)})}
    server.aggregate(1, replies, {"a": 1.0, "b": 1.0})
    assert torch.equal(server.global_state["encoder.x"], torch.full((3,), 0.5))
    replies["a"].shared["encoder.x"].add_(5)  # later changes to the sites' tensors must not leak in
    assert torch.equal(server.previous["a"]["encoder.x"], torch.zeros(3))
    restored = fedmri()
    restored.load_state_dict(server.state_dict())
    assert torch.equal(restored.previous["b"]["encoder.x"], torch.ones(3))
    assert torch.equal(restored.global_state["encoder.x"], torch.full((3,), 0.5))


def test_site_state_round_trips_between_processes(tiny_config):
    """What a site's process computed (SCAFFOLD variates, FL-MRCM discriminators) can be adopted elsewhere."""
    from assembly.build import Builder, quiet_lightning
    from fl.transport import InProcess

    quiet_lightning()  # as assembly.setup.in_process does: these fits have no validation loader
    for algorithm, mode in (("scaffold", None), ("flmrcm", "paper"), ("flmrcm", "features")):
        config = tiny_config(algorithm=algorithm)
        if mode is not None:
            config.fl.flmrcm.mode = mode
        builder = Builder(config, log=lambda _: None)
        sites, initial = builder.sites(builder.prepare_data())
        server = builder.server(initial)
        transport = InProcess(sites)
        requests = server.prepare_requests(1)
        if requests:
            server.receive_prepared(
                1, transport.prepare(1, {s: Payload(server.global_state) for s in requests})
            )
        payloads = {s.name: server.payload(s.name, 1) for s in sites}
        results = transport.fit(1, payloads, config.fl.local_epochs, config.optim.lr_at(1), skip=False)
        assert all(r.status == "ok" for r in results.values()), algorithm
        for site in sites:
            state = site.client.state_dict()
            if algorithm == "flmrcm" and site.name == server.target:
                assert state == {}  # the target site trains no discriminator
                continue
            assert state, (algorithm, site.name)
            other = builder.client(site.name)
            other.load_state_dict(state)
            again = other.state_dict()
            assert set(again) == set(state)
            flat_a = _flatten(state)
            flat_b = _flatten(again)
            assert flat_a.keys() == flat_b.keys()
            _assert_same(flat_a, flat_b, algorithm)
        # The server half's state (SCAFFOLD's variate c, FL-MRCM's target features) round trips too.
        replies = {name: r.reply for name, r in results.items()}
        if algorithm == "scaffold":
            assert all(any(k.startswith("delta/") for k in r.extra) for r in replies.values())
        server.aggregate(1, replies, {name: 1.0 for name in replies})
        again = builder.server(initial)
        again.load_state_dict(server.state_dict())
        _assert_same(_flatten(server.state_dict()), _flatten(again.state_dict()), algorithm)
        if mode == "features":  # the target's features reached the server
            assert server.state_dict()["features"] is not None


def _assert_same(flat_a, flat_b, algorithm):
    assert flat_a.keys() == flat_b.keys()
    for key, value in flat_a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, flat_b[key]), (algorithm, key)
        else:
            assert value == flat_b[key], (algorithm, key)


def _flatten(state, prefix=""):
    out = {}
    items = (
        state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, list) else None
    )
    if items is None:
        return {prefix: state}
    for key, value in items:
        out.update(_flatten(value, f"{prefix}.{key}"))
    return out


def random_updates(sites: int, seed: int, scale: float = 1.0) -> dict:
    """Sites' tensors of a small U-Net in float32 (channels_last among them) plus an integer buffer."""
    generator = torch.Generator().manual_seed(seed)
    state = Unet(chans=2, num_pool_layers=2).state_dict()
    updates = {}
    for k in range(sites):
        tensors = {n: scale * torch.randn(t.shape, generator=generator) for n, t in state.items()}
        first = next(n for n, t in tensors.items() if t.dim() == 4)
        tensors[first] = tensors[first].contiguous(memory_format=torch.channels_last)
        tensors["steps"] = torch.tensor(10 + 3 * k)
        updates[f"site{k}"] = tensors
    return updates


@pytest.mark.parametrize("sites", [1, 3, 5])
def test_flat_aggregation_gives_weighted_average_bit_for_bit(sites):
    averager = FlatAverager()
    for seed in range(3):  # buffers reused across rounds
        updates = random_updates(sites, seed, scale=10.0 ** (seed - 1))
        weights = {s: 0.7 + 1.3 * i for i, s in enumerate(updates)}
        expected = weighted_average(updates, weights)
        got = averager(updates, weights)
        assert list(got) == list(expected)
        for name in expected:
            assert got[name].dtype == expected[name].dtype and got[name].shape == expected[name].shape
            assert torch.equal(got[name], expected[name]), name
    smaller = {s: {n: t for n, t in list(u.items())[:3]} for s, u in random_updates(2, 9).items()}
    expected = weighted_average(smaller, {s: 1.0 for s in smaller})
    got = averager(smaller, {s: 1.0 for s in smaller})
    assert all(torch.equal(got[n], expected[n]) for n in expected)
    with pytest.raises(ValueError):
        averager(smaller, {s: 0.0 for s in smaller})


def test_servers_aggregate_flat_when_configured():
    updates = random_updates(3, seed=4)
    weights = {s: 1.0 for s in updates}
    for name in ("fedavg", "fedmri"):
        options = ALGORITHMS[name].Options() if ALGORITHMS[name].Options else None
        plain_server = build_server(name, options, Context(flat_aggregation=False))
        assert plain_server._averager is None
        plain_server.aggregate(2, {s: Reply(u) for s, u in updates.items()}, weights)
        flat_server = build_server(name, options, Context(flat_aggregation=True))
        assert isinstance(flat_server._averager, FlatAverager)
        flat_server.aggregate(2, {s: Reply(u) for s, u in updates.items()}, weights)
        plain, flat = plain_server.global_state, flat_server.global_state
        assert list(flat) == list(plain)
        assert all(torch.equal(flat[n], plain[n]) for n in plain)


@pytest.mark.parametrize("algorithm", ["fedmri", "fedprox", "scaffold", "flmrcm", "moon", "ditto"])
def test_penalties_follow_the_model_to_its_training_device(algorithm):
    """A site's penalty is planned before its fit, while the module is still on the CPU, and
    Lightning moves it to the accelerator when the fit starts ("meta" stands in for a GPU)."""
    cls = ALGORITHMS[algorithm]
    # FL-MRCM's features mode plans a penalty from the server's payload (paper mode reads peers' batches)
    overrides = {"fedprox": {"mu": 0.1}, "flmrcm": {"target_site": "b", "mode": "features"}}
    options = cls.Options(**overrides.get(algorithm, {}))
    context = Context(sites=("a", "b"))
    server = build_server(algorithm, options, context)
    client = build_client(algorithm, options, context, "a")
    torch.manual_seed(0)
    model = Unet(chans=2, num_pool_layers=2)
    server.setup(model)
    state = model.state_dict()
    names = server.shared_names(model)
    replies = {s: Reply({n: state[n] + 0.1 * torch.randn_like(state[n]) for n in names}) for s in ("a", "b")}
    if algorithm == "ditto":  # the global model travels as extras
        moved = {n: t + 0.1 * torch.randn_like(t) for n, t in state.items()}
        replies = {s: Reply({}, {f"global/{n}": t for n, t in moved.items()}) for s in ("a", "b")}
    if algorithm == "moon":  # the site's previous local model, its negative
        client.load_state_dict({"previous": {n: t + 0.1 * torch.randn_like(t) for n, t in state.items()}})
    server.aggregate(1, replies, {"a": 1.0, "b": 1.0})
    if algorithm == "scaffold":
        server.c = {n: torch.randn_like(t) for n, t in server.c.items()}
    if algorithm == "flmrcm":
        target = build_client(algorithm, options, context, "b")
        prepared = target.prepare(
            2, Payload(server.global_state), model, [{"input": torch.randn(4, 1, 16, 16)}]
        )
        server.receive_prepared(2, {"b": prepared})
    penalty = client.plan(2, server.payload("a", 2), model, epochs=1).penalty
    assert penalty is not None
    model.to("meta")
    x = torch.randn(4, 1, 16, 16, device="meta")
    features, _ = model.encoder(x)
    value = penalty(model, {"features": features, "input": x})
    assert value.device.type == "meta"
    value.backward()
