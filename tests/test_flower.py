"""The Flower app in one process (fl/flower/local.py): the in-process results, only shared tensors travel."""

import copy
import csv
import io
import json

import pytest
import torch

from fl.federation import Federation, SiteDiverged
from fl.flower.local import LocalGrid
from fl.flower.server import FlowerServer
from fl.strategies import build_strategy
from tests.conftest import tiny_config_dict
from utils.checkpoint import load_checkpoint
from utils.config import validate_config
from utils.errors import TrainingFailure, UserError

SUMMARY = {"nmse", "psnr", "ssim", "nmse_std", "psnr_std", "ssim_std", "volumes"}


def quiet(_):
    return None


def configs(tmp_path, algorithm="fedmri", rounds=2, **fl):
    """The same federation twice: run in-process (``inproc``) and on Flower (``flower``)."""
    data = tiny_config_dict(tmp_path, algorithm=algorithm, rounds=rounds)
    data["fl"].update(fl)
    return (
        validate_config(copy.deepcopy(data) | {"name": "inproc"}),
        validate_config(copy.deepcopy(data) | {"name": "flower"}),
    )


def nodes(config, tmp_path):
    """One node config per site: its name, its data (the cache the in-process run generated), its disk."""
    return [
        {"site": s.name, "data-root": config.data.cache_dir, "output-dir": str(tmp_path / "sites" / s.name)}
        for s in config.sites
    ]


def rows(run_dir):
    return list(csv.DictReader(io.StringIO((run_dir / "metrics.csv").read_text())))


def assert_same_run(reference, flower, tmp_path):
    """Results, metrics (but the byte columns), global tensors and every site's model are identical."""
    a = json.loads((reference.run_dir / "results.json").read_text())
    b = json.loads((flower.run_dir / "results.json").read_text())
    assert a | {"name": ""} == b | {"name": ""}
    columns = ("round", "site", "split", "loss", "nmse", "psnr", "ssim", "lr", "status")
    strip = [[{k: r[k] for k in columns} for r in rows(run.run_dir)] for run in (reference, flower)]
    assert strip[0] == strip[1]
    ref = load_checkpoint(reference.run_dir / "checkpoints" / "last.ckpt")
    server = load_checkpoint(flower.run_dir / "checkpoints" / "global.ckpt")
    assert server["round"] == ref["round"] and set(server["global"]) == set(ref["global"])
    assert all(torch.equal(server["global"][n], ref["global"][n]) for n in ref["global"])
    for site in ref["sites"]:
        own = load_checkpoint(tmp_path / "sites" / site / "flower" / site / "checkpoints" / "last.ckpt")
        for name, tensor in ref["sites"][site]["model"].items():  # decoders included
            assert torch.equal(own["sites"][site]["model"][name], tensor), (site, name)


@pytest.fixture(
    scope="module",
    params=[
        ("fedmri", {}),
        ("fedmri", {"fedmri": {"negatives": "self"}}),
        ("fedavg", {"client_weights": "samples"}),
        ("singleset", {}),
        ("scaffold", {}),
    ],
    ids=["fedmri-all", "fedmri-self", "fedavg-samples", "singleset", "scaffold"],
)
def both_runs(request, tmp_path_factory):
    """One federation run in-process and on the in-process Flower grid, with the grid's message log."""
    algorithm, fl = request.param
    tmp_path = tmp_path_factory.mktemp(algorithm)
    reference, flower = configs(tmp_path, algorithm, **fl)
    Federation(reference, log=quiet).run()
    grid = LocalGrid(nodes(flower, tmp_path))
    FlowerServer(grid, flower, log=quiet).run()
    return reference, flower, grid, tmp_path


def test_flower_app_ends_exactly_where_the_in_process_run_ends(both_runs):
    reference, flower, _, tmp_path = both_runs
    assert_same_run(reference, flower, tmp_path)


def test_messages_carry_only_shared_tensors_and_scalar_metrics(both_runs):
    _, config, grid, _ = both_runs
    strategy = build_strategy(config.fl, seed=config.seed)
    model = Federation(config, log=quiet)._new_module().model
    shapes = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    shared = set(strategy.shared_names(list(shapes), model))
    site_of = {node: ctx.node_config["site"] for node, ctx in grid.contexts.items()}
    sites = set(site_of.values())
    seen = set()
    for direction, message in grid.log:
        site = site_of[
            message.metadata.dst_node_id if direction == "to_site" else message.metadata.src_node_id
        ]
        records = message.content
        allowed = {"to_site": {"global", "downlink"}, "from_site": {"shared", "uplink"}}[direction]
        assert set(records.array_records) <= allowed
        for record_name, record in records.array_records.items():
            for key, array in record.items():
                seen.add((record_name, key.split("/")[0]))
                name = key
                if record_name in ("downlink", "uplink"):  # previous/<other site>/<name>, c/..., delta/...
                    prefix, _, name = key.partition("/")
                    assert prefix in ("previous", "c", "delta"), key
                    if prefix == "previous":
                        other, _, name = name.partition("/")
                        assert other in sites and other != site  # another site's, sent by the server
                assert name in shared, key
                assert tuple(array.shape) == shapes[name]  # a weight of the shared set, never an image
        for record in records.metric_records.values():
            assert all(isinstance(v, int | float) for v in record.values())  # scalars, no lists
        for record in records.config_records.values():
            assert all(isinstance(v, str | bool | int | float) for v in record.values())
            if "json" in record:  # the site's part of the config, sent once: hyper-parameters
                sent = json.loads(record["json"])
                assert [s["name"] for s in sent["sites"]] == [site] and sent["paths"] == {}
    if config.fl.algorithm == "fedmri":
        assert shared and all(n.startswith("encoder.") for n in shared)  # never a decoder weight
    if config.fl.algorithm == "singleset":
        assert not seen  # no tensor at all
    if config.fl.algorithm == "fedmri" and config.fl.fedmri.negatives == "all":
        assert ("downlink", "previous") in seen
    if config.fl.algorithm == "fedmri" and config.fl.fedmri.negatives == "self":
        assert not any(r == "downlink" for r, _ in seen)  # nothing beyond the shared encoder
    if config.fl.algorithm == "scaffold":
        assert {("downlink", "c"), ("uplink", "delta")} <= seen


def test_message_sizes_are_accounted_per_site_and_round(both_runs):
    _, config, grid, _ = both_runs
    traffic = list(csv.DictReader(io.StringIO((config.run_dir / "traffic.csv").read_text())))
    assert len(traffic) == len(grid.log)
    train = [r for r in rows(config.run_dir) if r["split"] == "train"]
    assert all(int(r["bytes_sent"]) > 0 and int(r["bytes_received"]) > 0 for r in train)
    for row in train:
        logged = [
            t
            for t in traffic
            if t["message"] == "train" and t["round"] == row["round"] and t["site"] == row["site"]
        ]
        by_direction = {t["direction"]: int(t["bytes"]) for t in logged}
        assert by_direction == {"to_site": int(row["bytes_received"]), "from_site": int(row["bytes_sent"])}
        for t in logged:  # the serialised message holds its tensors plus a little framing
            assert (
                int(t["tensor_bytes"])
                <= int(t["bytes"])
                <= int(t["tensor_bytes"]) + 8000 + 600 * int(t["tensors"])
            )


@pytest.mark.parametrize("algorithm", ["centralized", "transfer", "flmrcm"])
def test_algorithms_that_need_more_than_these_messages_are_refused(tmp_path, algorithm):
    _, config = configs(tmp_path, algorithm)
    with pytest.raises(UserError) as info:
        FlowerServer(LocalGrid(nodes(config, tmp_path)), config, log=quiet)
    message = str(info.value)
    assert message.startswith(f"fl.algorithm: {algorithm} ") and "\n" not in message


def test_sites_continue_from_their_disk_when_every_message_finds_a_fresh_node(tmp_path):
    """A SuperNode restart loses context.state: the site carries on from its run directory."""
    reference, flower = configs(tmp_path, "fedmri", rounds=3)
    Federation(reference, log=quiet).run()

    class Forgetful(LocalGrid):
        def push_messages(self, messages):
            for context in self.contexts.values():
                context.state = type(context.state)()
            return super().push_messages(messages)

    FlowerServer(Forgetful(nodes(flower, tmp_path)), flower, log=quiet).run()
    assert_same_run(reference, flower, tmp_path)


def test_server_resumes_after_a_crash_that_the_sites_outlived(tmp_path):
    reference, flower = configs(tmp_path, "fedmri", rounds=3)
    Federation(reference, log=quiet).run()

    class Crash(LocalGrid):
        def pull_messages(self, message_ids):
            replies = super().pull_messages(message_ids)
            if any(r.metadata.message_type == "train" and r.metadata.group_id == "3" for r in replies):
                raise KeyboardInterrupt  # the sites have validated round 2 and trained round 3
            return replies

    with pytest.raises(KeyboardInterrupt):
        FlowerServer(Crash(nodes(flower, tmp_path)), flower, log=quiet).run()
    assert load_checkpoint(flower.run_dir / "checkpoints" / "global.ckpt")["round"] == 1
    with pytest.raises(UserError, match="already holds a run"):
        FlowerServer(LocalGrid(nodes(flower, tmp_path)), flower, log=quiet).run()
    FlowerServer(LocalGrid(nodes(flower, tmp_path)), flower, resume=True, log=quiet).run()
    assert_same_run(reference, flower, tmp_path)


def diverge(monkeypatch, site="brats", rnd=2):
    """Site ``site`` diverges in round ``rnd``, wherever it trains."""
    original = Federation.train_site

    def train_site(self, which, current):
        if which.name == site and current == rnd:
            raise SiteDiverged(site, rnd, "non-finite loss at step 1")
        return original(self, which, current)

    monkeypatch.setattr(Federation, "train_site", train_site)


def test_a_diverging_site_stops_the_run_naming_site_and_round(tmp_path, monkeypatch):
    _, flower = configs(tmp_path, "fedmri", rounds=3)
    diverge(monkeypatch)
    with pytest.raises(TrainingFailure) as info:
        FlowerServer(LocalGrid(nodes(flower, tmp_path)), flower, log=quiet).run()
    assert "site brats diverged in round 2" in str(info.value) and "round 1" in str(info.value)
    assert load_checkpoint(flower.run_dir / "checkpoints" / "global.ckpt")["round"] == 1


def test_skip_policy_on_flower_equals_skip_policy_in_process(tmp_path, monkeypatch):
    reference, flower = configs(tmp_path, "fedavg", rounds=3, on_site_failure="skip")
    diverge(monkeypatch)
    Federation(reference, log=quiet).run()
    FlowerServer(LocalGrid(nodes(flower, tmp_path)), flower, log=quiet).run()
    assert_same_run(reference, flower, tmp_path)
    skipped = [(r["round"], r["site"]) for r in rows(flower.run_dir) if r["status"].startswith("skipped")]
    assert skipped == [("2", "brats")]


def test_site_errors_come_back_as_one_line_naming_the_site_or_node(tmp_path):
    _, flower = configs(tmp_path)
    with pytest.raises(UserError, match=r"node 1: node config site: required"):
        FlowerServer(LocalGrid([{"data-root": "/x"}]), flower, log=quiet).run()

    _, other = configs(tmp_path / "b")
    one = nodes(other, tmp_path)[:1] + [{"site": "elsewhere"}]
    with pytest.raises(UserError, match=r"sites \['brats'\] have no SuperNode"):
        FlowerServer(LocalGrid(one), other, node_wait=0, log=quiet).run()

    data = tiny_config_dict(tmp_path / "c")
    data["sites"][1]["source"] = {"kind": "folder", "root": "/nowhere"}
    data["name"] = "files"
    files = validate_config(data)
    with pytest.raises(UserError) as info:
        FlowerServer(
            LocalGrid(nodes(files, tmp_path / "c")[:1] + [{"site": "brats"}]), files, log=quiet
        ).run()
    assert str(info.value).startswith("site brats: node config data-root: required")


def test_fedmri_sends_a_site_the_other_sites_encoders_and_the_site_keeps_its_own(tiny_config):
    config = tiny_config()
    server, client = build_strategy(config.fl), build_strategy(config.fl)
    encoders = {s: {"encoder.w": torch.full((2,), float(i))} for i, s in enumerate(["a", "b", "c"])}
    server.aggregate(1, encoders, {s: 1.0 for s in encoders})
    assert server.downlink("a", 1) == {}  # before fl.fedmri.start_round nothing is needed
    down = server.downlink("a", 2)
    assert set(down) == {"previous/b/encoder.w", "previous/c/encoder.w"}
    assert client.uplink("a", 1, encoders["a"]) == {}
    client.receive_downlink("a", 2, down)
    assert set(client.previous) == set(server.previous)
    assert all(
        torch.equal(client.previous[s]["encoder.w"], server.previous[s]["encoder.w"]) for s in encoders
    )
    client.receive_downlink("a", 4, {})  # it sat round 3 out: its round-1 encoder is no negative
    assert "a" not in client.previous

    config.fl.fedmri.negatives = "self"
    server, client = build_strategy(config.fl), build_strategy(config.fl)
    server.aggregate(1, encoders, {s: 1.0 for s in encoders})
    assert server.downlink("a", 2) == {}  # nothing beyond the shared encoder
    client.uplink("a", 1, encoders["a"])
    client.receive_downlink("a", 2, {})
    assert list(client.previous) == ["a"]
