"""A Flower grid inside one process: the ClientApp answers for every site, no network, no Ray.

Every message still goes through Flower's serialisation both ways (deflated into its objects, then
inflated again), so sizes and contents are exactly what a SuperLink would carry; :attr:`LocalGrid.log`
keeps every message for inspection. For tests and quick trials of the app's logic; a deployment
uses the SuperLink (docs/flower.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.task_identity import TaskIdentity


def through_the_wire(message: Message) -> Message:
    """The message as the receiving side sees it: serialised into its objects and rebuilt from them."""
    contents = {object_id: obj.deflate() for object_id, obj in get_all_nested_objects(message).items()}
    received = inflate_object_from_contents(message.object_id, contents)
    received.metadata.__dict__["_message_id"] = message.metadata.message_id
    return received


class LocalGrid(Grid):
    """Nodes numbered from 1, each with its node config and its own persistent ``context.state``.

    Args:
        node_configs: one SuperNode's ``--node-config`` per node, as a mapping.
        app: the ClientApp (default: the project's).
        run_id: the run's id in every context.
    """

    def __init__(
        self, node_configs: Iterable[Mapping[str, Any]], app: ClientApp | None = None, run_id: int = 1
    ):
        if app is None:
            from deploy.client_app import app
        self.app = app
        self.contexts = {
            node: Context(
                run_id=run_id, node_id=node, node_config=dict(cfg), state=RecordDict(), run_config={}
            )
            for node, cfg in enumerate(node_configs, start=1)
        }
        self.log: list[tuple[str, Message]] = []  # ("to_site" | "from_site", message as received)
        self._replies: dict[str, Message] = {}
        self._run: Any = None
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, 0, 1

    def set_run(self, run: Any) -> None:
        """Remember the run (unused here)."""
        self._run = run

    @property
    def run(self) -> Any:
        """The run set with :meth:`set_run`."""
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """A new message to ``dst_node_id``."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        """Every node's id."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Deliver each message to its node's ClientApp now; keep the replies for :meth:`pull_messages`."""
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = message.object_id
            delivered = through_the_wire(message)
            self.log.append(("to_site", delivered))
            reply = through_the_wire(self.app(delivered, self.contexts[message.metadata.dst_node_id]))
            self.log.append(("from_site", reply))
            self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """The replies to ``message_ids`` (all are ready)."""
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Push and pull at once."""
        return self.pull_messages(self.push_messages(messages))
