"""Every algorithm through the real federation loop on tiny data: one round, state, traffic, hooks."""

import math

import pytest
import torch

import fl.algorithms.flmrcm as flmrcm
from assembly.build import Builder, is_federated
from assembly.config import validate_config
from assembly.setup import in_process
from data.site import round_order
from fl.aggregation import nbytes
from fl.algorithms.base import head_names
from fl.federation import Federation
from fl.options import algorithm_names
from fl.references import Centralized, PooledReference, TransferLeaveOneOut, TransferSite
from tests.conftest import save_hand_round
from utils.errors import UserError

ALL_SHARED = {"fedavg", "fedprox", "fedbn", "scaffold", "moon"}
POOLED = ["centralized", "transfer", "transfer_loo"]
STATEFUL = {"fedmri", "scaffold", "ditto", "centralized", "transfer", "transfer_loo"}  # server state too


def quiet(_):
    pass


def create_run(config, log=quiet):
    """train.py's run of ``config`` (data prepared, sites built), not yet started."""
    return in_process(Builder(config, log=log))


def sites_of(rounds):
    """The sites of a federation (behind its in-process transport) or of a reference."""
    return rounds.transport.sites if isinstance(rounds, Federation) else rounds.sites


@pytest.mark.parametrize("algorithm", [a for a in algorithm_names() if a != "flmrcm"])  # flmrcm: below
def test_one_round_of_every_algorithm(tiny_config, tmp_path, algorithm):
    run = create_run(tiny_config(algorithm=algorithm, rounds=1))
    rounds = run.rounds
    pooled = isinstance(rounds, PooledReference)
    assert pooled == (algorithm in POOLED) == (not is_federated(algorithm))
    summary = rounds.round(1)
    assert set(summary) == {"fastmri", "brats"}
    for values in summary.values():
        assert math.isfinite(values["loss"]) and values["psnr"] > 0
        assert values["status"] == "ok"
    a, b = (s.module.model.state_dict() for s in sites_of(rounds))
    identical = {n for n in a if torch.equal(a[n], b[n])}
    if algorithm in ALL_SHARED | {"centralized", "transfer"}:  # transfer: one model visits every site
        assert identical == set(a)
    elif algorithm in ("singleset", "transfer_loo"):
        assert not any(n.startswith("encoder.") for n in identical)
    else:
        assert set(rounds.server.global_state) <= identical and identical != set(a)
    if pooled:
        assert "bytes_sent" not in summary["fastmri"]
    else:
        shared = nbytes(rounds.server.global_state.values())
        assert summary["fastmri"]["bytes_received"] >= shared
        assert summary["brats"]["bytes_sent"] >= shared
        if algorithm == "scaffold":  # the control variates double the traffic in both directions
            assert summary["fastmri"]["bytes_sent"] == summary["fastmri"]["bytes_received"] == 2 * shared
    if algorithm in STATEFUL:
        assert_checkpoint_carries_the_algorithm(run, tmp_path)


def assert_checkpoint_carries_the_algorithm(run, tmp_path):
    """The algorithm's server and site state goes into the checkpoint, loads weights_only, restores."""
    path = tmp_path / "last.ckpt"
    save_hand_round(run, path)
    ckpt = torch.load(path, weights_only=True)
    again = create_run(validate_config(run.config))
    again.load(path)
    state = again.rounds.state_dict()
    assert ckpt["server"].keys() == state["server"].keys() and ckpt["server"]
    flat = list(_tensors(ckpt["server"]))
    assert flat and all(torch.equal(a, b) for a, b in zip(flat, _tensors(state["server"]), strict=True))
    clients = {name: site["client"] for name, site in ckpt["sites"].items()}
    assert clients.keys() == state["sites"].keys()
    for name, client in clients.items():
        again_client = state["sites"][name]["client"]
        assert client.keys() == again_client.keys()
        assert all(torch.equal(a, b) for a, b in zip(_tensors(client), _tensors(again_client), strict=True))


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield from _tensors(tree[key])
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _tensors(item)


def test_pooled_references_are_not_federated(tiny_config, tiny_config_file, capsys):
    """Centralized and Transfer-Site have no server half: train.py runs them as pooled references,
    and the multi-process federation refuses them in one line naming fl.algorithm."""
    import train_multi_gpu

    assert not any(is_federated(name) for name in POOLED)
    assert isinstance(create_run(tiny_config(algorithm="centralized")).rounds, Centralized)
    assert isinstance(create_run(tiny_config(algorithm="transfer")).rounds, TransferSite)
    path = tiny_config_file(algorithm="centralized")
    capsys.readouterr()
    assert train_multi_gpu.main(["--config", str(path), "--devices", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fl.algorithm" in err, err


def test_fedrep_trains_head_then_body_in_each_round(tiny_config):
    """Every optimiser step of the round's one pass moves only the head (first head_epochs' worth of
    steps), then only the body; the head (the 1x1 output conv without fl.head) never travels."""
    config = tiny_config(algorithm="fedrep", rounds=1)
    federation = create_run(config).rounds
    server = federation.server
    site = federation.transport.sites[0]
    model = site.module.model
    params = [n for n, _ in model.named_parameters()]
    head = head_names(params, "conv")
    changed = []
    step = site.module.optimizer.step

    def recorded_step(closure=None, **kwargs):
        before = {}

        def wrapped():  # Lightning's closure runs forward and backward; the step follows
            loss = closure()
            before.update({n: p.detach().clone() for n, p in model.named_parameters()})
            return loss

        result = step(wrapped, **kwargs)
        changed.append({n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())})
        return result

    site.module.optimizer.step = recorded_step
    site.fit(1, server.payload(site.name, 1), config.fl.local_epochs, config.optim.lr_at(1))
    k = round(config.fl.fedrep.head_epochs * len(site.data.train_dataloader()))
    assert 0 < k < len(changed) == site.last_steps
    assert all(c == head for c in changed[:k])  # head steps: only the head learns
    assert all(c == set(params) - head for c in changed[k:])  # body steps: only the body learns
    assert all(p.requires_grad for p in model.parameters())  # restored afterwards
    assert set(server.global_state) == set(model.state_dict()) - head


def test_flmrcm_discriminator_sees_only_features_never_images(tiny_config, monkeypatch, tmp_path):
    """Our ``features`` mode (the paper mode moves target images into the source fits; see
    tests/fl/test_paper_baselines.py): only pooled features cross sites."""
    config = tiny_config(algorithm="flmrcm", rounds=1)
    config.fl.flmrcm.mode = "features"
    config.sites[1].source.size = 48  # the target (the last site) has a different image size
    config = validate_config(config.to_dict())
    assert config.fl.flmrcm.target_site == "brats"
    seen_by_discriminator = []
    make = flmrcm.feature_discriminator

    def recording(dim, hidden):
        disc = make(dim, hidden)
        disc.register_forward_pre_hook(lambda m, args: seen_by_discriminator.append(tuple(args[0].shape)))
        return disc

    monkeypatch.setattr(flmrcm, "feature_discriminator", recording)
    run = create_run(config)
    federation = run.rounds
    sites = federation.transport.sites
    seen_by_encoder = {s.name: set() for s in sites}
    for s in sites:
        s.module.model.encoder.register_forward_pre_hook(
            lambda m, args, name=s.name: seen_by_encoder[name].add(tuple(args[0].shape[-2:]))
        )
    summary = federation.round(1)
    bottleneck = config.model.chans * 2**config.model.num_pool_layers
    # Images never leave their site: each encoder only ever ran on its own site's image size.
    assert seen_by_encoder == {"fastmri": {(32, 32)}, "brats": {(48, 48)}}
    # What crossed sites and what the discriminator saw: pooled bottleneck features only.
    target = federation.server.features
    assert target.ndim == 2 and target.shape[1] == 4 * bottleneck
    assert seen_by_discriminator and all(
        len(s) == 2 and s[1] == 4 * bottleneck for s in seen_by_discriminator
    )
    # The target trains without a discriminator.
    assert {s.name for s in sites if s.client.discriminator is not None} == {"fastmri"}
    # Traffic: FedAvg's whole model both ways, plus the features the target sends and the source receives.
    shared = nbytes(federation.server.global_state.values())
    assert summary["brats"]["bytes_sent"] == shared + nbytes([target])
    assert summary["fastmri"]["bytes_received"] == shared + nbytes([target])
    assert summary["fastmri"]["bytes_sent"] == summary["brats"]["bytes_received"] == shared
    a, b = (s.module.model.state_dict() for s in sites)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert_checkpoint_carries_the_algorithm(run, tmp_path)


def test_centralized_pool_batches_come_from_one_site_in_each_sites_own_order(tiny_config):
    run = create_run(tiny_config(algorithm="centralized", rounds=1)).rounds
    pool = run.pools["all"]
    pool.set_round(3)
    pool.sampler.set_epoch(1)
    batches = list(pool.sampler)
    assert len(batches) == len(pool.sampler)
    seen = {0: [], 1: []}
    for batch in batches:
        members = {member for member, _ in batch}
        assert len(members) == 1  # image sizes differ between sites: never mixed in a batch
        assert all(key[1:] == (3, 1) for _, key in batch)
        seen[batch[0][0]].append([key[0] for _, key in batch])
    for index, member in enumerate(pool.members):
        # The same batches, with the same masks, as the site's own loader forms in that epoch.
        order = round_order(len(member.datasets["train"]), seed=0, site=member.name, rnd=3, epoch=1)
        own = [order[i : i + member.batch_size] for i in range(0, len(order), member.batch_size)]
        assert sorted(seen[index]) == sorted(own)
    sample = next(iter(pool.train_dataloader()))
    assert sample["input"].shape[1:] == (1, 32, 32)


def test_transfer_loo_trains_each_model_on_the_other_sites_only(tiny_config):
    run = create_run(tiny_config(algorithm="transfer_loo", rounds=1)).rounds
    assert isinstance(run, TransferLeaveOneOut)
    assert run.groups(run.site_names) == {"fastmri": ["brats"], "brats": ["fastmri"]}
    assert [m.name for m in run.pools["fastmri"].members] == ["brats"]
    validated = []
    validate = run._validate
    run._validate = lambda module, data: validated.append(data.name) or validate(module, data)
    run.round(1)
    assert sorted(validated) == ["brats", "fastmri"]  # model selection on the training sites' val only


@pytest.mark.parametrize("algorithm", POOLED)
def test_pooled_references_run_to_the_end_with_outputs(tiny_config, algorithm):
    """The whole run (round log, metrics, best models, test) as train.py drives it, not one round."""
    config = tiny_config(algorithm=algorithm, rounds=2)
    lines = []
    results = create_run(config, log=lines.append).run()
    assert sum(line.startswith("round ") for line in lines) == 2
    run_dir = config.run_dir
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    train = [row.split(",") for row in rows[1:] if row.split(",")[header.index("split")] == "train"]
    assert len(train) == 4 and {row[header.index("status")] for row in train} == {"ok"}
    assert (run_dir / "results.json").is_file()
    assert set(results["sites"]) == {"fastmri", "brats"}


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"fl": {"algorithm": "flmrcm", "flmrcm": {"target_site": "nowhere"}}}, "fl.flmrcm.target_site"),
        ({"fl": {"algorithm": "transfer"}, "sites": 1}, "fl.algorithm"),
        ({"fl": {"algorithm": "transfer_loo"}, "sites": 1}, "fl.algorithm"),
        ({"fl": {"fedprox": {"mu": -1}}}, "fl.fedprox.mu"),
        ({"fl": {"head": "neck"}}, "fl.head"),
        ({"fl": {"fedmri": {"share": "half"}}}, "fl.fedmri.share"),
    ],
)
def test_algorithm_options_are_validated(tmp_path, changes, key):
    from tests.conftest import tiny_config_dict

    data = tiny_config_dict(tmp_path)
    if changes.pop("sites", None):
        data["sites"] = data["sites"][:1]
    for section, values in changes.items():
        for k, v in values.items():
            data[section][k] = v
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        validate_config(data)
