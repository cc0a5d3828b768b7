"""Which SuperNode is which site, and sending messages to them (no torch: starts before the model).

The server asks every node it has not met yet to name its site (``query.identify``); the ServerApp
does that first thing, so the answers arrive while it loads torch and the config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fl.flower.wire import IDENTIFY, config_of
from utils.errors import UserError

K = TypeVar("K")


def push(grid: Grid, messages: Mapping[K, Message]) -> dict[str, K]:
    """Push ``messages``; returns their ids, each mapped to the message's key."""
    keys = list(messages)
    ids = list(grid.push_messages([messages[k] for k in keys]))
    if len(ids) != len(keys) or not all(ids):
        raise RuntimeError("the SuperLink refused some messages")
    return dict(zip(ids, keys))


def pull(grid: Grid, pending: dict[str, K]) -> dict[K, Message]:
    """The replies that arrived to the ``pending`` message ids (removed from it), by key; never waits."""
    if not pending:
        return {}
    replies = {}
    for reply in grid.pull_messages(list(pending)):
        key = pending.pop(reply.metadata.reply_to_message_id, None)
        if key is not None:
            replies[key] = reply
    return replies


class NoReply(UserError):
    """Some messages had no reply within the wait: ``missing`` holds their keys, in the order sent."""

    def __init__(self, missing: list[Any], timeout: float):
        self.missing, self.timeout = missing, timeout
        super().__init__(f"{', '.join(map(str, missing))}: no reply within {timeout:g} s (reply-wait)")


def send_and_wait(
    grid: Grid, messages: Mapping[K, Message], poll_interval: float, timeout: float | None = None
) -> dict[K, Message]:
    """Push ``messages`` and poll every ``poll_interval`` seconds until every one has its reply.

    After ``timeout`` seconds (``None``: no limit) with replies still missing, :class:`NoReply` names
    the keys of the messages without one (a site whose ClientApp was stopped alone gets no error reply).
    """
    pending = push(grid, messages)
    limit = math.inf if timeout is None else timeout
    deadline = time.monotonic() + limit
    replies: dict[K, Message] = {}
    while True:
        replies.update(pull(grid, pending))
        if not pending:
            return replies
        left = deadline - time.monotonic()
        if left <= 0:
            waiting = set(pending.values())
            raise NoReply([k for k in messages if k in waiting], limit)
        time.sleep(min(poll_interval, left))  # the last poll comes at the deadline


class SiteDirectory:
    """Maps the federation's sites to connected SuperNodes, from what each node says it is.

    Args:
        grid: the Flower grid.
        poll_interval: seconds between polls.
        node_wait: seconds :meth:`connect` waits for missing sites.
        log: where notes go.
    """

    def __init__(
        self,
        grid: Grid,
        poll_interval: float = 0.2,
        node_wait: float = 600.0,
        log: Callable[[str], None] = print,
    ):
        self.grid = grid
        self.poll_interval, self.node_wait = poll_interval, node_wait
        self.log = log
        self.named: dict[int, str] = {}  # node id -> the site it says it is
        self.nodes: dict[str, int] = {}  # site -> node id
        self.exchanged: list[tuple[Message, Message]] = []  # (question, answer), for traffic accounting
        self._asked: dict[int, Message] = {}
        self._pending: dict[str, int] = {}

    def ask(self) -> None:
        """Ask every connected node not asked yet to name its site (returns at once)."""
        new = sorted(set(self.grid.get_node_ids()) - set(self._asked))
        if new:
            questions = {node: Message(RecordDict(), dst_node_id=node, message_type=IDENTIFY) for node in new}
            self._asked.update(questions)
            self._pending.update(push(self.grid, questions))

    def _collect(self) -> None:
        for node, answer in pull(self.grid, self._pending).items():
            self.exchanged.append((self._asked[node], answer))
            status = config_of(answer.content, "status") if answer.has_content() else {}
            if answer.has_error() or "error" in status:
                raise UserError(
                    f"node {node}: {answer.error.reason if answer.has_error() else status['error']}"
                )
            self.named[node] = str(status.get("site"))

    def connect(self, sites: list[str]) -> dict[str, int]:
        """Wait until every site of ``sites`` has exactly one connected node; the site -> node map."""
        deadline = time.monotonic() + self.node_wait
        while True:
            self.ask()
            self._collect()
            alive = set(self.grid.get_node_ids())
            claimed: dict[str, list[int]] = {}
            for node in sorted(alive & set(self.named)):
                claimed.setdefault(self.named[node], []).append(node)
            for site, nodes in claimed.items():
                if site in sites and len(nodes) > 1:
                    raise UserError(f"node config site: nodes {nodes} all say they are site {site!r}")
            missing = [s for s in sites if s not in claimed]
            if not missing:
                for site, nodes in claimed.items():
                    if site not in sites and self.nodes.get(site) != nodes[0]:
                        self.log(
                            f"node {nodes[0]} is site {site!r}, which the config does not list; left out"
                        )
                    self.nodes[site] = nodes[0]
                return {s: self.nodes[s] for s in sites}
            if time.monotonic() > deadline:
                raise UserError(
                    f"sites {missing} have no SuperNode after {self.node_wait:g} s (node-wait); "
                    f"connected: {sorted(s for s in claimed if s in sites) or 'none'}"
                )
            time.sleep(self.poll_interval)


def describe(nodes: Mapping[str, Any]) -> str:
    """``site: node id`` pairs for a log line."""
    return ", ".join(f"{site}: node {node}" for site, node in nodes.items())
