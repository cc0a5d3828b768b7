"""The Strategy seam: shared sets on the real U-Net and aggregation arithmetic."""

import pytest
import torch

from fl.strategies import ALGORITHMS, FedAvg, FedMRI, FlatAverager, SingleSet, weighted_average
from models.unet import Unet


@pytest.fixture
def names():
    return list(Unet(chans=2, num_pool_layers=4).state_dict())


def test_fedmri_shares_exactly_the_encoder(names):
    shared = FedMRI().shared_names(names)
    assert shared == [n for n in names if n.startswith("encoder.")]
    assert shared and not any(n.startswith("decoder.") for n in shared)
    net = Unet(chans=32, num_pool_layers=4)
    state = net.state_dict()
    assert sum(state[n].numel() for n in FedMRI().shared_names(list(state))) == 4_709_664


def test_fedavg_shares_everything_singleset_nothing(names):
    assert FedAvg().shared_names(names) == names
    assert SingleSet().shared_names(names) == []


def test_registry():
    assert {"fedmri", "fedavg", "singleset"} <= set(ALGORITHMS)


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
    strategy = FedMRI()
    updates = {"a": {"encoder.x": torch.zeros(3)}, "b": {"encoder.x": torch.ones(3)}}
    out = strategy.aggregate(1, updates, {"a": 1.0, "b": 1.0})
    assert torch.equal(out["encoder.x"], torch.full((3,), 0.5))
    updates["a"]["encoder.x"].add_(5)  # later changes to the sites' tensors must not leak in
    assert torch.equal(strategy.previous["a"]["encoder.x"], torch.zeros(3))
    restored = FedMRI()
    restored.load_state_dict(strategy.state_dict())
    assert torch.equal(restored.previous["b"]["encoder.x"], torch.ones(3))


def test_site_state_round_trips_between_processes(tiny_config):
    """What a site's process computed (SCAFFOLD variates, FL-MRCM discriminators) can be adopted elsewhere."""
    from fl.federation import Federation
    from fl.strategies import build_strategy

    for algorithm in ("scaffold", "flmrcm"):
        config = tiny_config(algorithm=algorithm)
        fed = Federation(config, log=lambda _: None)
        fed.setup()
        fed.prepare_round(1)
        for site in fed.sites:
            fed.train_site(site, 1)
        other = build_strategy(config.fl, seed=config.seed)
        for site in fed.sites:
            state = fed.strategy.site_state(site.name)
            assert set(state) > {"traffic"}, algorithm
            other.load_site_state(site.name, state)
            again = other.site_state(site.name)
            assert set(again) == set(state)
            flat_a = {k: v for k, v in _flatten(state).items()}
            flat_b = {k: v for k, v in _flatten(again).items()}
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


def test_strategies_aggregate_flat_when_configured():
    from types import SimpleNamespace

    updates = random_updates(3, seed=4)
    weights = {s: 1.0 for s in updates}
    for algorithm in (FedAvg, FedMRI):
        plain = algorithm(SimpleNamespace(flat_aggregation=False)).aggregate(2, updates, weights)
        flat_strategy = algorithm(SimpleNamespace(flat_aggregation=True))
        assert isinstance(flat_strategy._averager, FlatAverager)
        flat = flat_strategy.aggregate(2, updates, weights)
        assert all(torch.equal(flat[n], plain[n]) for n in plain)


@pytest.mark.parametrize("algorithm", ["fedmri", "fedprox", "scaffold", "flmrcm"])
def test_penalties_follow_the_model_to_its_training_device(algorithm):
    """The federation builds a site's penalty before its fit, while the module is still on the CPU,
    and Lightning moves it to the accelerator when the fit starts ("meta" stands in for a GPU)."""
    from types import SimpleNamespace

    config = SimpleNamespace(fedprox=SimpleNamespace(mu=0.1), flmrcm=SimpleNamespace(target_site="b"))
    strategy = ALGORITHMS[algorithm](config)
    torch.manual_seed(0)
    model = Unet(chans=2, num_pool_layers=2)
    names = strategy.shared_names(list(model.state_dict()), model)
    state = model.state_dict()
    updates = {s: {n: state[n] + 0.1 * torch.randn_like(state[n]) for n in names} for s in ("a", "b")}
    global_state = strategy.aggregate(1, updates, {"a": 1.0, "b": 1.0})
    if algorithm == "scaffold":
        strategy.c = {n: torch.randn_like(t) for n, t in global_state.items() if t.is_floating_point()}
    if algorithm == "flmrcm":
        strategy.prepare_site("b", 2, model, [{"input": torch.randn(4, 1, 16, 16)}])
    penalty = strategy.penalty("a", 2, model, global_state)
    assert penalty is not None
    model.to("meta")
    features, _ = model.encoder(torch.randn(4, 1, 16, 16, device="meta"))
    value = penalty(model, {"features": features})
    assert value.device.type == "meta"
    value.backward()
