"""The server's wait for the sites' replies (fl/flower/nodes.py ``send_and_wait``, run config
``reply-wait``): bounded, and a site that never replies is one line naming it. A fake grid whose
replies arrive after a given number of polls (or never); no Flower process, no training."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from flwr.app import Message, RecordDict

from deploy.local import LocalGrid
from fl.flower.nodes import NoReply, send_and_wait
from fl.flower.transport import FlowerTransport
from fl.flower.wire import EVALUATE, TRAIN
from utils.errors import UserError


class SlowGrid:
    """Pushing gives every message an id; the reply to the message of key ``k`` arrives at the pull after
    ``after[k]`` pulls (``None``: never). The messages are their keys."""

    def __init__(self, after: dict[str, int | None]):
        self.after, self.sent, self.pulls = after, {}, 0

    def push_messages(self, messages):
        ids = []
        for key in messages:
            ids.append(f"id-{key}")
            self.sent[ids[-1]] = key
        return ids

    def pull_messages(self, message_ids):
        self.pulls += 1
        ready = [i for i in message_ids if self.after[self.sent[i]] is not None]
        return [
            SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=i), key=self.sent[i])
            for i in ready
            if self.pulls > self.after[self.sent[i]]
        ]


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_replies_within_the_wait_come_back_by_key(timeout):
    grid = SlowGrid({"alpha": 0, "beta": 3, "gamma": 1})
    replies = send_and_wait(grid, {k: k for k in grid.after}, poll_interval=0.001, timeout=timeout)
    assert {k: r.key for k, r in replies.items()} == {"alpha": "alpha", "beta": "beta", "gamma": "gamma"}
    assert grid.pulls == 4


def test_missing_replies_stop_the_wait_naming_exactly_the_silent_keys():
    grid = SlowGrid({"alpha": 0, "beta": None, "gamma": 2, "delta": None})
    start = time.monotonic()
    with pytest.raises(NoReply) as info:
        send_and_wait(grid, {k: k for k in grid.after}, poll_interval=0.005, timeout=0.05)
    waited = time.monotonic() - start
    assert isinstance(info.value, UserError) and 0.05 <= waited < 0.5, waited
    assert info.value.missing == ["beta", "delta"] and info.value.timeout == 0.05
    line = str(info.value)
    assert line == "beta, delta: no reply within 0.05 s (reply-wait)"
    assert "alpha" not in line and "gamma" not in line


class SilentSites(LocalGrid):
    """Nodes named after sites; the ClientApps of ``silent`` take every message and never answer (a
    ``flwr-clientapp`` stopped while its SuperNode runs on), the others answer with an empty reply."""

    def __init__(self, sites: list[str], silent: set[str]):
        super().__init__([{"site": s} for s in sites])
        self.silent = silent

    def push_messages(self, messages):
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = message.object_id
            if self.contexts[message.metadata.dst_node_id].node_config["site"] not in self.silent:
                self._replies[message.metadata.message_id] = Message(RecordDict(), reply_to=message)
            ids.append(message.metadata.message_id)
        return ids


def transport(sites: list[str], silent: set[str]) -> FlowerTransport:
    grid = SilentSites(sites, silent)
    directory = SimpleNamespace(
        connect=lambda names: {site: node for node, site in enumerate(sites, start=1) if site in names},
        exchanged=[],
        named={},
    )
    return FlowerTransport(
        grid, sites, site_config=lambda site: {}, name="run", directory=directory,
        poll_interval=0.002, reply_wait=0.03, log=lambda _: None,
    )  # fmt: skip


@pytest.mark.parametrize(
    "silent, kind, rnd, expected",
    [
        (
            {"sms", "brats"},
            TRAIN,
            3,
            "sites brats, sms: no reply to the train message of round 3 within 0.03 s",
        ),
        (
            {"brats"},
            EVALUATE,
            0,
            "site brats: no reply to the evaluate message of the final test within 0.03 s",
        ),
    ],
    ids=["two-sites-train", "one-site-test"],
)
def test_the_servers_line_names_the_silent_sites_the_message_and_how_to_continue(silent, kind, rnd, expected):
    sites = ["fastmri", "brats", "sms"]
    with pytest.raises(UserError) as info:
        transport(sites, silent)._exchange(kind, rnd, {site: RecordDict() for site in sites})
    line = str(info.value)
    assert line.startswith(expected + " (reply-wait); the server keeps its last completed round"), line
    assert line.endswith("then continue with resume=true") and "\n" not in line
    assert "fastmri" not in line and ("sms" in line) == ("sms" in silent)
