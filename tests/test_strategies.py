"""The Strategy seam: shared sets on the real U-Net and aggregation arithmetic."""

import pytest
import torch

from fl.strategies import ALGORITHMS, FedAvg, FedMRI, SingleSet, weighted_average
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
