"""The Flower app in one process (deploy/local.py): the in-process results, only shared tensors travel."""

import copy
import csv
import io
import json
import math

import pytest
import torch
from flwr.app import Message
from torch import nn

from assembly.build import Builder
from assembly.config import validate_config
from assembly.setup import in_process
from deploy.local import LocalGrid, through_the_wire
from deploy.server_app import serve
from fl.algorithms.base import Payload, Reply
from fl.flower.wire import payload_content, payload_of, reply_content, reply_of
from fl.site import Site, SiteDiverged
from tests.conftest import run_figures_undrawn, tiny_config_dict
from utils.checkpoint import load_checkpoint
from utils.errors import TrainingFailure, UserError
from utils.run_log import DIAGNOSTIC_COLUMNS

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


def same(a, b):
    """Equal nested state: tensors bit for bit (dtype included), everything else by value."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_run(reference, flower, tmp_path):
    """Results, metrics (but the byte columns), global tensors, the algorithm's server state and every
    site's model, optimiser and algorithm state are identical."""
    a = json.loads((reference.run_dir / "results.json").read_text())
    b = json.loads((flower.run_dir / "results.json").read_text())
    # Each test volume's metrics stay at the site (volume names may identify patients): the server's
    # results hold the summaries, the site's own results.json the volumes.
    for site, values in a["sites"].items():
        assert "volumes" not in b["sites"][site]
        own = json.loads((tmp_path / "sites" / site / "flower" / site / "results.json").read_text())
        assert own["sites"][site]["volumes"] == values.pop("volumes")
    assert a | {"name": ""} == b | {"name": ""}
    columns = ("round", "site", "split", "loss", "nmse", "psnr", "ssim", "lr", "status", *DIAGNOSTIC_COLUMNS)
    strip = [[{k: r[k] for k in columns} for r in rows(run.run_dir)] for run in (reference, flower)]
    assert strip[0] == strip[1]
    steps = [
        json.loads((run.run_dir / "timing.json").read_text())["local_steps_per_round"]
        for run in (reference, flower)
    ]
    assert steps[0] == steps[1] and steps[0] > 0  # the sites report their optimiser steps
    ref = load_checkpoint(reference.run_dir / "checkpoints" / "last.ckpt")
    server = load_checkpoint(flower.run_dir / "checkpoints" / "last.ckpt")
    assert server["round"] == ref["round"] and set(server["global"]) == set(ref["global"])
    assert all(torch.equal(server["global"][n], ref["global"][n]) for n in ref["global"])
    assert same(server["server"], ref["server"])  # e.g. SCAFFOLD's variate, Ditto's global model
    for site in ref["sites"]:
        own = load_checkpoint(tmp_path / "sites" / site / "flower" / site / "checkpoints" / "last.ckpt")
        for name, tensor in ref["sites"][site]["model"].items():  # decoders included
            assert torch.equal(own["sites"][site]["model"][name], tensor), (site, name)
        # what the site keeps between messages: e.g. MOON's previous model, Ditto's optimiser state
        for part in ("optimizer", "client"):
            assert same(own["sites"][site][part], ref["sites"][site][part]), (site, part)


@pytest.fixture(
    scope="module",
    params=[
        ("fedmri", {}),
        ("fedmri", {"fedmri": {"negatives": "self"}}),
        ("fedavg", {"client_weights": "samples"}),
        ("singleset", {}),
        ("scaffold", {}),
        ("moon", {}),
        ("ditto", {}),
    ],
    ids=["fedmri-all", "fedmri-self", "fedavg-samples", "singleset", "scaffold", "moon", "ditto"],
)
def both_runs(request, tmp_path_factory):
    """One federation run in-process and on the in-process Flower grid, with the grid's message log;
    their figures left undrawn (the tests compare numbers and messages)."""
    algorithm, fl = request.param
    tmp_path = tmp_path_factory.mktemp(algorithm)
    reference, flower = configs(tmp_path, algorithm, **fl)
    with run_figures_undrawn() as asked:
        in_process(Builder(reference, log=quiet)).run()
        grid = LocalGrid(nodes(flower, tmp_path))
        serve(grid, flower, log=quiet)
    assert asked  # the runs came to their figures
    return reference, flower, grid, tmp_path


def test_flower_app_ends_exactly_where_the_in_process_run_ends(both_runs):
    reference, flower, _, tmp_path = both_runs
    assert_same_run(reference, flower, tmp_path)


def test_messages_carry_only_shared_tensors_and_scalar_metrics(both_runs):
    _, config, grid, _ = both_runs
    model = Builder(config, log=quiet).module().model
    shapes = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    shared = set(Builder(config, log=quiet).server(model).shared_names(model))
    site_of = {node: ctx.node_config["site"] for node, ctx in grid.contexts.items()}
    sites = set(site_of.values())
    seen = set()
    for direction, message in grid.log:
        site = site_of[
            message.metadata.dst_node_id if direction == "to_site" else message.metadata.src_node_id
        ]
        records = message.content
        allowed = {"to_site": {"global", "extra"}, "from_site": {"shared", "extra"}}[direction]
        assert set(records.array_records) <= allowed
        for record_name, record in records.array_records.items():
            for key, array in record.items():
                seen.add((record_name, key.split("/")[0]))
                name = key
                if record_name == "extra":  # previous/<other site>/<name>, c/..., delta/..., global/...
                    prefix, _, name = key.partition("/")
                    assert prefix in ("previous", "c", "delta", "global"), key
                    if prefix == "previous":
                        other, _, name = name.partition("/")
                        assert other in sites and other != site  # another site's, sent by the server
                if record_name == "extra" and prefix == "global":  # Ditto's global model, both ways
                    assert config.fl.algorithm == "ditto" and name in shapes, key
                else:
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
        assert ("extra", "previous") in seen
    if config.fl.algorithm == "fedmri" and config.fl.fedmri.negatives == "self":
        assert not any(r == "extra" for r, _ in seen)  # nothing beyond the shared encoder
    if config.fl.algorithm == "scaffold":
        assert {("extra", "c"), ("extra", "delta")} <= seen
    if config.fl.algorithm == "moon":  # the previous local models stay at the sites
        assert shared == set(shapes) and not any(r == "extra" for r, _ in seen)
    if config.fl.algorithm == "ditto":  # the personal models stay at the sites
        assert not shared and {r for r, _ in seen} == {"extra"} and ("extra", "global") in seen
        replies = [m.content for d, m in grid.log if d == "from_site" and m.metadata.message_type == "train"]
        # Reply.values crosses too: round(half of 3 batches) steps on the global model
        assert replies and all(dict(r.config_records["values"]) == {"global_steps": 2} for r in replies)


def test_message_sizes_are_accounted_per_site_and_round(both_runs):
    _, config, grid, _ = both_runs
    traffic = list(csv.DictReader(io.StringIO((config.run_dir / "traffic.csv").read_text())))
    assert len(traffic) == len(grid.log)
    train = [r for r in rows(config.run_dir) if r["split"] == "train"]
    assert all(int(r["bytes_sent"]) > 0 and int(r["bytes_received"]) > 0 for r in train)
    for row in train:  # a round's bytes: its train and its validate exchange
        logged = [
            t
            for t in traffic
            if t["message"] in ("train", "evaluate")
            and t["round"] == row["round"]
            and t["site"] == row["site"]
        ]
        assert sorted(t["message"] for t in logged) == ["evaluate", "evaluate", "train", "train"]
        by_direction = {
            d: sum(int(t["bytes"]) for t in logged if t["direction"] == d) for d in ("to_site", "from_site")
        }
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
        serve(LocalGrid(nodes(config, tmp_path)), config, log=quiet)
    message = str(info.value)
    assert message.startswith(f"fl.algorithm: {algorithm} ") and "\n" not in message


def test_sites_continue_from_their_disk_when_every_message_finds_a_fresh_node(tmp_path):
    """A SuperNode restart loses context.state: the site carries on from its run directory."""
    reference, flower = configs(tmp_path, "fedmri", rounds=3)
    in_process(Builder(reference, log=quiet)).run()

    class Forgetful(LocalGrid):
        def push_messages(self, messages):
            for context in self.contexts.values():
                context.state = type(context.state)()
            return super().push_messages(messages)

    serve(Forgetful(nodes(flower, tmp_path)), flower, log=quiet)
    assert_same_run(reference, flower, tmp_path)
    for site in ("fastmri", "brats"):  # each site's timing comes back from its disk with the rest
        timing = json.loads((tmp_path / "sites" / site / "flower" / site / "timing.json").read_text())
        assert timing["rounds_timed"] == 3


@pytest.mark.parametrize("algorithm", ["fedmri", "ditto"])  # ditto: its global model resumes on the server
def test_server_resumes_after_a_crash_that_the_sites_outlived(tmp_path, algorithm):
    reference, flower = configs(tmp_path, algorithm, rounds=3)
    in_process(Builder(reference, log=quiet)).run()

    class Crash(LocalGrid):
        def pull_messages(self, message_ids):
            replies = super().pull_messages(message_ids)
            if any(r.metadata.message_type == "train" and r.metadata.group_id == "3" for r in replies):
                raise KeyboardInterrupt  # the sites have validated round 2 and trained round 3
            return replies

    with pytest.raises(KeyboardInterrupt):
        serve(Crash(nodes(flower, tmp_path)), flower, log=quiet)
    assert load_checkpoint(flower.run_dir / "checkpoints" / "last.ckpt")["round"] == 2
    with pytest.raises(UserError, match="already holds a run"):
        serve(LocalGrid(nodes(flower, tmp_path)), flower, log=quiet)
    serve(LocalGrid(nodes(flower, tmp_path)), flower, resume=True, log=quiet)
    assert_same_run(reference, flower, tmp_path)
    # the server's timing covers the two rounds before the crash too
    assert json.loads((flower.run_dir / "timing.json").read_text())["rounds_timed"] == 3


def test_a_site_that_never_replies_stops_the_server_after_reply_wait_keeping_the_last_round(tmp_path):
    """brats's ClientApp stops, unanswered, at round 2's train message (a ``flwr-clientapp`` killed while
    its SuperNode runs on): the server stops after reply-wait naming it, round 1 on disk; resume ends."""
    reference, flower = configs(tmp_path, "fedavg", rounds=2)
    in_process(Builder(reference, log=quiet)).run()

    class Silent(LocalGrid):
        def push_messages(self, messages):
            ids = []
            for message in messages:
                meta = message.metadata
                site = self.contexts[meta.dst_node_id].node_config["site"]
                if (site, meta.message_type, meta.group_id) == ("brats", "train", "2"):
                    meta.__dict__["_message_id"] = message.object_id
                    ids.append(meta.message_id)  # taken, never answered
                else:
                    ids += super().push_messages([message])
            return ids

    with pytest.raises(UserError) as info:
        serve(Silent(nodes(flower, tmp_path)), flower, poll_interval=0.001, reply_wait=0.05, log=quiet)
    assert str(info.value).startswith("site brats: no reply to the train message of round 2 within 0.05 s")
    assert "fastmri" not in str(info.value)
    assert load_checkpoint(flower.run_dir / "checkpoints" / "last.ckpt")["round"] == 1
    assert {r["round"] for r in rows(flower.run_dir)} == {"1"}
    serve(LocalGrid(nodes(flower, tmp_path)), flower, resume=True, log=quiet)
    assert_same_run(reference, flower, tmp_path)


def diverge(monkeypatch, site="brats", rnd=2):
    """Site ``site`` diverges in round ``rnd``, wherever it trains."""
    original = Site.fit

    def fit(self, current, payload, epochs, lr):
        if self.name == site and current == rnd:
            raise SiteDiverged(site, rnd, "non-finite loss at step 1")
        return original(self, current, payload, epochs, lr)

    monkeypatch.setattr(Site, "fit", fit)


def test_a_diverging_site_stops_the_run_naming_site_and_round(tmp_path, monkeypatch):
    _, flower = configs(tmp_path, "fedmri", rounds=3)
    diverge(monkeypatch)
    with pytest.raises(TrainingFailure) as info:
        serve(LocalGrid(nodes(flower, tmp_path)), flower, log=quiet)
    assert "site brats diverged in round 2" in str(info.value) and "round 1" in str(info.value)
    assert load_checkpoint(flower.run_dir / "checkpoints" / "last.ckpt")["round"] == 1


def test_skip_policy_on_flower_equals_skip_policy_in_process(tmp_path, monkeypatch):
    reference, flower = configs(tmp_path, "fedavg", rounds=3, on_site_failure="skip")
    diverge(monkeypatch)
    in_process(Builder(reference, log=quiet)).run()
    serve(LocalGrid(nodes(flower, tmp_path)), flower, log=quiet)
    assert_same_run(reference, flower, tmp_path)
    skipped = [(r["round"], r["site"]) for r in rows(flower.run_dir) if r["status"].startswith("skipped")]
    assert skipped == [("2", "brats")]


def test_site_errors_come_back_as_one_line_naming_the_site_or_node(tmp_path):
    _, flower = configs(tmp_path)
    with pytest.raises(UserError, match=r"node 1: node config site: required"):
        serve(LocalGrid([{"data-root": "/x"}]), flower, log=quiet)

    _, other = configs(tmp_path / "b")
    one = nodes(other, tmp_path)[:1] + [{"site": "elsewhere"}]
    with pytest.raises(UserError, match=r"sites \['brats'\] have no SuperNode"):
        serve(LocalGrid(one), other, node_wait=0, log=quiet)

    data = tiny_config_dict(tmp_path / "c")
    data["sites"][1]["source"] = {"kind": "folder", "root": "/nowhere"}
    data["name"] = "files"
    files = validate_config(data)
    with pytest.raises(UserError) as info:
        serve(LocalGrid(nodes(files, tmp_path / "c")[:1] + [{"site": "brats"}]), files, log=quiet)
    assert str(info.value).startswith("site brats: node config data-root: required")


def test_fedmri_sends_a_site_the_other_sites_encoders_and_the_site_keeps_its_own(tiny_config):
    config = tiny_config()
    model = nn.Module()
    model.encoder = nn.Linear(2, 1, bias=False)  # one shared parameter: encoder.weight
    encoders = {s: {"encoder.weight": torch.full((1, 2), float(i))} for i, s in enumerate(["a", "b", "c"])}
    global_state = {"encoder.weight": torch.full((1, 2), 0.5)}
    live = {"encoder.weight": torch.tensor([[0.25, -1.0]])}

    def term(negatives):
        w = live["encoder.weight"]
        pos = (w - global_state["encoder.weight"]).abs().sum()
        neg = sum((w - encoders[s]["encoder.weight"]).abs().sum() for s in negatives)
        return 100.0 * pos / neg

    def penalty(client, rnd, extra):
        plan = client.plan(rnd, Payload(global_state, extra), model, 1)
        if plan.penalty is None:
            return None
        with torch.no_grad():
            model.encoder.weight.copy_(live["encoder.weight"])
        return float(plan.penalty(model).detach())

    builder = Builder(config, log=quiet)
    server = builder.server(model)
    client = builder.client("a")
    server.aggregate(1, {s: Reply(t) for s, t in encoders.items()}, {s: 1.0 for s in encoders})
    assert server.extra("a", 1) == {}  # before fl.fedmri.start_round nothing is needed
    extra = server.extra("a", 2)
    assert set(extra) == {"previous/b/encoder.weight", "previous/c/encoder.weight"}  # never its own
    client.reply(1, Payload(global_state), model, encoders["a"], steps=1, lr=1.0)  # keeps its own
    assert penalty(client, 2, extra) == pytest.approx(float(term(["a", "b", "c"])))
    # It sat round 3 out: its round-1 encoder is no negative in round 4.
    assert penalty(client, 4, server.extra("a", 4)) == pytest.approx(float(term(["b", "c"])))

    config.fl.fedmri.negatives = "self"
    builder = Builder(config, log=quiet)
    server, client = builder.server(model), builder.client("a")
    server.aggregate(1, {s: Reply(t) for s, t in encoders.items()}, {s: 1.0 for s in encoders})
    assert server.extra("a", 2) == {}  # nothing beyond the shared encoder
    client.reply(1, Payload(global_state), model, encoders["a"], steps=1, lr=1.0)
    assert penalty(client, 2, {}) == pytest.approx(float(term(["a"])))


def _same_tensors(a, b):
    assert list(a) == list(b)
    for name, tensor in a.items():
        assert b[name].dtype == tensor.dtype and b[name].shape == tensor.shape, name
        assert b[name].numpy().tobytes() == tensor.contiguous().numpy().tobytes(), name  # bit for bit


def _same_values(a, b):
    assert list(a) == list(b)
    for key, value in a.items():
        assert type(b[key]) is type(value), key
        assert b[key] == value or (value != value and b[key] != b[key]), key  # nan stays nan
        if isinstance(value, float):
            assert math.copysign(1.0, b[key]) == math.copysign(1.0, value), key  # -0.0 stays -0.0


def test_payloads_and_replies_cross_the_wire_whole():
    """Every tensor (name, dtype, shape, bits) and every value (type included) arrives as it was sent."""
    LocalGrid([])  # Flower's task identity, which every message needs
    torch.manual_seed(0)
    tensors = {
        "encoder.0.weight": torch.randn(4, 1, 3, 3),
        "c/encoder.0.bias": torch.randn(4, dtype=torch.float64),
        "global/norm.num_batches_tracked": torch.tensor(7),  # 0-dim int64
        "half": torch.randn(2, 3).half(),
        "mask": torch.tensor([True, False, True]),
        "bytes": torch.arange(5, dtype=torch.uint8),
        "ints": torch.tensor([-3, 2], dtype=torch.int32),
        "empty": torch.zeros(0, 3),
        "transposed": torch.randn(3, 2).t(),  # not contiguous
        "special": torch.tensor([math.nan, math.inf, -math.inf, -0.0]),
    }
    values = {
        "yes": True, "no": False, "steps": 3, "zero": 0, "negative": -(2**62), "largest": 2**63 - 1,
        "rate": 1.5e-4, "whole": 2.0, "nan": math.nan, "inf": -math.inf, "minus_zero": -0.0,
        "name": "brats", "empty": "", "unicode": "é/ü",
    }  # fmt: skip

    def through(content):
        message = Message(content, dst_node_id=1, message_type="train", group_id="1")
        message.metadata.__dict__["_message_id"] = message.object_id
        return through_the_wire(message).content

    global_state = {"encoder.0.weight": tensors["encoder.0.weight"]}
    round_record = {"round": {"name": "run", "round": 1, "step": "train"}}
    payload = payload_of(through(payload_content(Payload(global_state, tensors, values), round_record)))
    _same_tensors(global_state, payload.global_state)
    _same_tensors(tensors, payload.extra)
    _same_values(values, payload.values)

    sent = Reply(dict(reversed(tensors.items())), {"delta/x": torch.ones(2)}, values)
    received = reply_of(through(reply_content(sent, {"status": {"site": "a"}})))
    _same_tensors(sent.shared, received.shared)
    _same_tensors(sent.extra, received.extra)
    _same_values(values, received.values)

    # Nothing more than before for an algorithm without values; a skipped site sends no tensors.
    plain = through(reply_content(Reply(global_state), {"status": {"site": "a"}}))
    assert set(plain.config_records) == {"status"} and reply_of(plain).values == {}
    skipped = through(reply_content(None, {"status": {"site": "a", "train": "skipped: nan"}}))
    assert not skipped.array_records and reply_of(skipped) == Reply()
    with pytest.raises(TypeError, match="value 'shape'"):
        payload_content(Payload({}, values={"shape": [1, 2]}), round_record)
