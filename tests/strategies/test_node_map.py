"""Logical clients onto nodes: by position (modulo) or by the node's own partition-id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import Message

from fedcl.config import Config, compose
from fedcl.errors import ConfigError, RoundError
from simulations.inprocess import InProcessGrid
from strategies.node_map import NodeMap
from strategies.server.loop import run_federation
from tests.conftest import synthetic_overrides

CLIENTS = 4


class PartitionedGrid(InProcessGrid):
    """Nodes with shuffled ids, each holding one partition (``bind-partition`` when asked); in process."""

    def __init__(self, partition_of: dict[int, int], bind: bool = True, answer_info: bool = True) -> None:
        super().__init__(node_configs={
            n: {"partition-id": p, "num-partitions": len(partition_of), **({"bind-partition": "true"} if bind else {})}
            for n, p in partition_of.items()
        })
        self.answer_info = answer_info
        self.sent: list[Message] = []

    def serve(self, msg: Message) -> Message | None:
        self.sent.append(msg)
        if msg.metadata.message_type == "query.node_info" and not self.answer_info:
            return None
        return super().serve(msg)


def _cfg(tmp_path: Path, mapping: str) -> Config:
    return compose(synthetic_overrides("quiet=true", f"federation.num_clients={CLIENTS}", "output.plots=false",
                                       "checkpoint.enabled=false", "federation.round_retries=0",
                                       f"federation.node_mapping={mapping}", f"output.dir={tmp_path}"))


# node ids in one order, partitions in the other: modulo sends every client to a foreign partition
REVERSED = {10: 3, 20: 2, 30: 1, 40: 0}


def test_partition_mapping_sends_each_client_to_its_own_partition(tmp_path: Path) -> None:
    # Prepare: partition-bound nodes (a misrouted client raises on the node)
    grid = PartitionedGrid(REVERSED)
    # Execute
    summary = run_federation(grid, _cfg(tmp_path, "partition"), tmp_path)
    # Assert: one node_info query per node, then every train message at the node of its partition
    queries = [m for m in grid.sent if m.metadata.message_type == "query.node_info"]
    assert sorted(m.metadata.dst_node_id for m in queries) == sorted(REVERSED)
    trains = [m for m in grid.sent if m.metadata.message_type == "train"]
    assert trains and all(REVERSED[m.metadata.dst_node_id] == int(m.content["config"]["client-id"])  # type: ignore[arg-type,index]
                          for m in trains)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["failed_clients"] == 0 and r["rejected_clients"] == 0 for r in rows)
    assert summary["acc"] > 0.5


def test_modulo_mapping_misroutes_on_partition_bound_nodes(tmp_path: Path) -> None:
    # Prepare: the same nodes; modulo ignores their partitions
    grid = PartitionedGrid(REVERSED)
    # Execute / Assert: every client lands on a foreign partition and the node refuses it
    with pytest.raises(RoundError, match="holds partition"):
        run_federation(grid, _cfg(tmp_path, "modulo"), tmp_path)
    assert not [m for m in grid.sent if m.metadata.message_type == "query.node_info"]


def test_missing_partition_stops_with_a_clear_error() -> None:
    # Prepare: 3 logical clients, nodes hold partitions 0 and 1 only; a fake clock makes the wait expire
    grid = PartitionedGrid({5: 0, 6: 1})
    now = iter(range(0, 1000, 10))
    nm = NodeMap("partition", num_clients=3, wait_s=15, poll_s=0.0, clock=lambda: float(next(now)))
    # Execute / Assert: the error names the missing partition and the fix
    with pytest.raises(RoundError, match=r"partition\(s\) \[2\].*partition-id=<i> num-partitions=3"):
        nm.nodes(grid)
    # the known nodes were asked once, not at every poll
    assert len([m for m in grid.sent if m.metadata.message_type == "query.node_info"]) == 2


def test_node_without_partition_info_is_not_used() -> None:
    # Prepare: nodes that do not answer the node_info query (no reply before the timeout)
    grid = PartitionedGrid({5: 0}, answer_info=False)
    nm = NodeMap("partition", num_clients=1, wait_s=0, poll_s=0.0)
    # Execute / Assert
    with pytest.raises(RoundError, match=r"\[0\]"):
        nm.nodes(grid)


def test_modulo_mapping_and_bad_mode() -> None:
    nm = NodeMap("modulo", num_clients=5)
    assert [nm.node_for(c, [7, 8]) for c in range(5)] == [7, 8, 7, 8, 7]
    with pytest.raises(ConfigError, match="federation.node_mapping"):
        NodeMap("by-name")
