"""The performance switches: safe defaults, unchanged parameter names, and the same numbers where promised."""

from pathlib import Path

import pytest
import torch
import yaml

from assembly.build import Builder
from assembly.config import load_config
from assembly.setup import in_process
from models.recon_module import ReconModule
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = {"chans": 4, "num_pool_layers": 2}
OPTIM = {"name": "rmsprop", "lr": 1e-3}


def test_default_config_keeps_every_fast_path_off():
    config = load_config(ROOT / "configs" / "default.yaml")
    assert config.model.channels_last is False and config.model.compile is False
    assert config.fl.flat_aggregation is False
    assert yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())["trainer"]["precision"] == "auto"
    assert config.trainer.precision in ("bf16-mixed", "32-true")  # resolved for this machine
    assert config.trainer.persistent_workers is True and config.trainer.pin_memory is None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.channels_last=sometimes", "model.channels_last"),
        ("model.compile=fast", "model.compile"),
        ("fl.flat_aggregation=3", "fl.flat_aggregation"),
        ("trainer.pin_memory=always", "trainer.pin_memory"),
        ("trainer.persistent_workers=maybe", "trainer.persistent_workers"),
    ],
)
def test_bad_fast_path_values_name_their_key(override, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_config(ROOT / "configs" / "default.yaml", [override])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's imports
@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("unet", {"channels_last": True}),
        ("unet", {"compile": True}),
        ("dual_domain", {"channels_last": True}),
        ("dual_domain", {"compile": True}),
    ],
)
def test_fast_paths_keep_parameter_names(kind, options):
    plain = ReconModule(model={**TINY_MODEL, "kind": kind}, optim=OPTIM)
    fast = ReconModule(model={**TINY_MODEL, "kind": kind, **options}, optim=OPTIM)
    assert list(fast.model.state_dict()) == list(plain.model.state_dict())
    assert [n for n, _ in fast.model.named_parameters()] == [n for n, _ in plain.model.named_parameters()]
    fast.model.load_state_dict(plain.model.state_dict())  # checkpoints move between the two


def test_channels_last_module_computes_the_same_loss_and_gradients():
    torch.manual_seed(0)
    plain = ReconModule(model=TINY_MODEL, optim=OPTIM)
    fast = ReconModule(model={**TINY_MODEL, "channels_last": True}, optim=OPTIM)
    fast.model.load_state_dict(plain.model.state_dict())
    conv = fast.model.encoder.down[1].layers[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    batch = {"input": torch.randn(2, 1, 16, 16), "target": torch.randn(2, 1, 16, 16)}
    losses = []
    for module in (plain, fast):
        loss = module.training_step(batch, 0)
        loss.backward()
        losses.append(loss.detach())
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)
    for (name, a), b in zip(plain.model.named_parameters(), fast.model.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name
    assert torch.allclose(plain(batch["input"]), fast(batch["input"]), rtol=1e-4, atol=1e-5)


def _final_state(config) -> dict:
    fed = in_process(Builder(config, log=lambda _: None)).rounds
    for rnd in (1, 2):  # the contrastive term is active in round 2
        fed.round(rnd)
    return {
        "global": fed.server.global_state,
        "sites": {s.name: s.module.model.state_dict() for s in fed.transport.sites},
        "previous": fed.server.previous,
    }


def test_flat_aggregation_leaves_a_fedmri_run_bit_for_bit_unchanged(tiny_config):
    plain = _final_state(tiny_config())
    config = tiny_config()
    config.fl.flat_aggregation = True
    assert Builder(config).context().flat_aggregation
    flat = _final_state(config)

    def same(a, b):
        if isinstance(a, dict):
            return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
        return torch.equal(a, b)

    assert same(plain, flat)


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_sample_cache_leaves_a_run_bit_for_bit_unchanged(tiny_config):
    plain_config = tiny_config()
    plain_config.data.sample_cache_mb = 0
    cached_config = tiny_config()
    assert cached_config.data.sample_cache_mb > 0
    assert _same(_final_state(plain_config), _final_state(cached_config))


def test_sample_cache_keeps_fixed_samples_only_and_within_its_budget(tiny_config):
    from data.site import SampleCache

    config = tiny_config()
    builder = Builder(config, log=lambda _: None)
    data = builder.data_module(config.sites[0])
    data.setup()
    val = data.datasets["val"]
    first = val[1]
    assert ("val", 1) in data.cache
    again = val[1]
    assert _same(first, again) and again is not first  # a copy of the kept sample, the same values
    uncached = builder.data_module(config.sites[0])
    uncached.cache = None
    uncached.setup()
    assert _same(uncached.datasets["val"][1], first)

    config.sites[0].mask.redraw_train = True  # training masks change every round: nothing kept
    redrawn = Builder(config, log=lambda _: None).data_module(config.sites[0])
    redrawn.setup()
    redrawn.datasets["train"][(1, 1, 0)]
    assert ("train", 1) not in redrawn.cache

    config.trainer.num_workers = 2  # each worker would keep its own copy: nothing is cached
    assert Builder(config, log=lambda _: None).data_module(config.sites[0]).cache is None

    small = SampleCache(max_bytes=3 * first["input"].numel() * 4)
    small.put(("val", 0), first)  # input and target: two of the three budgeted images
    small.put(("val", 1), first)  # would need four
    assert len(small) == 1 and small.bytes <= small.max_bytes
