"""A Flower ``Grid`` that answers messages by calling the ClientApp handlers in this process.

Used by the benchmarks to profile the server and the client side of a run in one
process (cProfile sees both), and to time the federation without Ray, the
SuperLink or serialisation. The messages, strategy, evaluator and client code
are the production ones; only the transport is replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from fedcl import client_app

Handler = Callable[[Message, Context], Message]


class InProcessGrid(Grid):
    """Serve ``train`` and ``query.gpse`` messages with :mod:`fedcl.client_app`'s handlers, in order.

    Parameters
    ----------
    num_nodes : int
        Node ids offered to the strategy (``1..num_nodes``); logical clients map onto them.
    """

    def __init__(self, num_nodes: int = 1) -> None:
        # Message() reads the sender's identity from TaskIdentity outside a running app
        TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
        self.nodes = list(range(1, num_nodes + 1))
        self.contexts = {
            n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}) for n in self.nodes
        }
        self.handlers: dict[str, Handler] = {"train": client_app.run_train, "query.gpse": client_app.run_gpse}
        self._run: Run | None = None

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        assert self._run is not None
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content=content, message_type=message_type, dst_node_id=dst_node_id, group_id=group_id,
                       ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("InProcessGrid answers synchronously: use send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("InProcessGrid answers synchronously: use send_and_receive")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for msg in messages:
            handler = self.handlers[msg.metadata.message_type]
            replies.append(handler(msg, self.contexts[msg.metadata.dst_node_id]))
        return replies
