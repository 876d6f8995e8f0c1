"""Which node plays logical client ``c``: by position, or by the node's own ``partition-id``.

``federation.node_mapping=modulo`` (the default) sends client ``c`` to
``sorted(node_ids)[c % #nodes]``: right in simulation and whenever every node can
derive any client's data. In a deployment where each SuperNode holds only its own
slice, ``node_mapping=partition`` asks every node once for its ``partition-id``
(the ClientApp's ``query.node_info``; Flower's simulation sets it too) and sends
client ``c`` to the node holding partition ``c``. The run waits for every
partition to be online and stops with a clear error if some never appears.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flwr.serverapp import Grid

from fedcl.errors import ConfigError, RoundError
from fedcl.nodes import node_info_query, partition_of

log = logging.getLogger("fedcl")

MODES = ("modulo", "partition")


class NodeMap:
    """Map logical clients onto Flower nodes.

    Parameters
    ----------
    mode : str, default "modulo"
        ``modulo`` or ``partition`` (see the module docstring).
    num_clients : int, default 1
        Logical clients; in ``partition`` mode partitions ``0..num_clients-1`` must all be online.
    wait_s : float, default 600.0
        ``partition`` mode: seconds to wait for the missing partitions before stopping the run.
    poll_s : float, default 1.0
        Seconds between two looks at the connected nodes while waiting.
    clock : Callable[[], float], default time.monotonic
        Time source (tests pass a fake one).
    """

    def __init__(self, mode: str = "modulo", num_clients: int = 1, wait_s: float = 600.0, poll_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in MODES:
            raise ConfigError("federation.node_mapping", mode, f"one of {list(MODES)}")
        self.mode, self.num_clients, self.wait_s, self.poll_s, self.clock = mode, num_clients, wait_s, poll_s, clock
        self.partition_of: dict[int, int] = {}  # node id -> partition id (-1: the node has none)
        self.node_of: dict[int, int] = {}  # partition id -> node id

    def nodes(self, grid: Grid, min_nodes: int = 1) -> list[int]:
        """Sorted node ids, once ``min_nodes`` are connected (and, by partition, every partition is)."""
        deadline = self.clock() + self.wait_s
        while True:
            nodes = sorted(grid.get_node_ids())
            if len(nodes) >= max(min_nodes, 1):
                if self.mode == "modulo":
                    return nodes
                missing = self._learn_partitions(grid, nodes)
                if not missing:
                    return nodes
                if self.clock() >= deadline:
                    raise RoundError(
                        f"federation.node_mapping=partition: no connected node holds partition(s) {missing[:20]} "
                        f"after {self.wait_s:.0f} s (online nodes report partitions "
                        f"{sorted(set(self.partition_of.values()))}). Start one SuperNode per logical client with "
                        f"--node-config 'partition-id=<i> num-partitions={self.num_clients}', or set "
                        "federation.node_mapping=modulo"
                    )
            time.sleep(self.poll_s)

    def node_for(self, client_id: int, node_ids: list[int]) -> int:
        """The node that plays logical client ``client_id``."""
        if self.mode == "partition":
            return self.node_of[client_id]
        return node_ids[client_id % len(node_ids)]

    def _learn_partitions(self, grid: Grid, nodes: list[int]) -> list[int]:
        """Ask the nodes not seen before for their partition; the partitions still missing."""
        self.partition_of = {n: p for n, p in self.partition_of.items() if n in nodes}  # gone nodes forgotten
        new = [n for n in nodes if n not in self.partition_of]
        if new:
            replies = grid.send_and_receive([node_info_query(n) for n in new], timeout=max(self.poll_s, 30.0))
            for r in replies:
                self.partition_of[r.metadata.src_node_id] = partition_of(r)
        self.node_of = {}
        for n in sorted(self.partition_of):
            p = self.partition_of[n]
            if p < 0:
                continue
            if p in self.node_of:
                log.warning("nodes %d and %d both hold partition %d: using %d", self.node_of[p], n, p, self.node_of[p])
                continue
            self.node_of[p] = n
        return [p for p in range(self.num_clients) if p not in self.node_of]
