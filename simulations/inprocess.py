"""The in-process engine (``backend=inprocess``): the same ServerApp round loop and ClientApp, in one Python process.

No SuperLink, no Ray, no serialisation: :class:`InProcessGrid` is a Flower ``Grid`` whose
``push_messages`` calls fedcl's ClientApp (mods and handlers, exactly as a SuperNode
would) on every message in turn and keeps the replies for ``pull_messages``. The server
side is :func:`strategies.server.loop.run_federation`, unchanged. Same config, same
outputs and (every draw being seeded per client and round, sums taken in canonical
order) the same numbers as the Flower simulation for the same seed. For debugging,
notebooks (:func:`fedcl.run`), tests and grids of small runs; the Flower simulation
stays the default (``backend=local``) for runs that need parallel clients or a cluster.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

import fedcl.keys as keys
from fedcl.client.app import app
from fedcl.config import Config

CLIENT_APP_RAISED_EXCEPTION = 1  # Flower's error code for an exception in the ClientApp


class InProcessGrid(Grid):
    """A Flower grid that serves every message with fedcl's ClientApp in this process, one after the other.

    Parameters
    ----------
    num_nodes : int
        Nodes (``1..num_nodes``); node ``i`` has ``partition-id = i - 1`` in its node config,
        as Flower's simulation gives its SuperNodes.
    client_threads : int | None, default None
        Torch threads while a client works (a Ray actor has ``floor(backend.client_num_cpus)``:
        the same count gives the same float sums, so the same numbers); ``None`` = unchanged.
    node_configs : dict[int, dict] | None, default None
        Node id -> node config, replacing the ``num_nodes`` simulation-like nodes (deployment tests).
    """

    def __init__(self, num_nodes: int = 1, client_threads: int | None = None,
                 node_configs: dict[int, dict[str, Any]] | None = None) -> None:
        self.client_threads = client_threads
        # Message() reads the sender's identity from TaskIdentity outside a running app
        TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
        if node_configs is None:
            node_configs = {n: {keys.PARTITION_ID: n - 1, keys.NUM_PARTITIONS: num_nodes}
                            for n in range(1, num_nodes + 1)}
        self.nodes = list(node_configs)
        self.contexts = {n: Context(run_id=1, node_id=n, node_config=dict(nc), state=RecordDict(), run_config={})
                         for n, nc in node_configs.items()}
        self._replies: dict[str, Message] = {}
        self._next_id = 0
        self._run: Run | None = None

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        assert self._run is not None
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content=content, message_type=message_type, dst_node_id=dst_node_id, group_id=group_id,
                       ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Serve every message now (its reply waits for :meth:`pull_messages`); return their ids."""
        ids = []
        for msg in messages:
            self._next_id += 1
            msg.metadata.__dict__["_message_id"] = f"inprocess-{self._next_id}"
            ids.append(msg.metadata.message_id)
            reply = self.serve(msg)
            if reply is not None:
                self._replies[msg.metadata.message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(list(self.push_messages(messages)))

    def serve(self, msg: Message) -> Message | None:
        """The ClientApp's reply; an exception becomes Flower's error reply, as on a SuperNode.

        Subclasses (tests, drills) may return ``None``: the reply is lost, as with a node that vanished.
        """
        node = msg.metadata.dst_node_id
        # each node gets its own records, as deserialisation would give it (mods add, remove and pop keys);
        # ArrayRecords are shared, read-only by every handler and mod (they copy what they change)
        content = RecordDict({k: v if isinstance(v, ArrayRecord) else copy.deepcopy(v) for k, v in msg.content.items()})
        delivered = Message(content=content, message_type=msg.metadata.message_type, dst_node_id=node,
                            group_id=msg.metadata.group_id)
        delivered.metadata.__dict__["_message_id"] = msg.metadata.message_id
        threads = torch.get_num_threads()
        if self.client_threads is not None:
            torch.set_num_threads(self.client_threads)
        try:
            reply = app(delivered, self.contexts[node])
        except Exception as exc:  # noqa: BLE001 - a client's failure is a reply, not the server's crash
            reply = Message(Error(CLIENT_APP_RAISED_EXCEPTION,
                                  f"{type(exc).__name__} occurred. Message: {exc}"), reply_to=delivered)
        finally:
            torch.set_num_threads(threads)
        reply.metadata.__dict__["_src_node_id"] = node
        return reply


def run_inprocess(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Run ``cfg`` with the in-process engine into ``run_dir``; return the summary."""
    from strategies.server.loop import run_federation

    nodes = cfg.supernodes
    return run_federation(InProcessGrid(nodes, max(1, math.floor(cfg.backend.client_num_cpus))), cfg, run_dir)
