"""The deployment contract of a SuperNode: its node-config keys and the ``query.node_info`` message.

A SuperNode started with ``--node-config "partition-id=<i> num-partitions=<n> [data-dir=...]
[bind-partition=true]"`` can (a) keep its data files at its own path, (b) refuse to play
any logical client but its own partition, so a real deployment never trains on data
that is not the node's, and (c) tell the server its partition (``query.node_info``), so
that with ``federation.node_mapping=partition`` the server sends client ``c`` to the
node holding partition ``c`` (``strategies/node_map.py``). Flower's simulation sets
``partition-id`` / ``num-partitions``, not the others. Both halves use this module.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

import fedcl.keys as keys
from fedcl.config import Config
from fedcl.errors import DataError

NODE_INFO_TYPE = f"{MessageType.QUERY}.{keys.NODE_INFO}"


def apply_node_config(cfg: Config, context: Context, client_id: int) -> Config:
    """``cfg`` with the SuperNode's ``data-dir``; refuses foreign clients on a ``bind-partition`` node."""
    nc = context.node_config
    if str(nc.get(keys.BIND_PARTITION, "")).lower() in ("true", "1"):
        if keys.PARTITION_ID not in nc:
            raise DataError("node config 'bind-partition' needs 'partition-id'")
        if int(nc[keys.PARTITION_ID]) != client_id:  # type: ignore[arg-type]
            raise DataError(
                f"this SuperNode holds partition {nc[keys.PARTITION_ID]} (bind-partition=true) but was asked to play "
                f"logical client {client_id}: map clients to nodes by partition id (federation.node_mapping=partition)"
            )
        if keys.NUM_PARTITIONS in nc and int(nc[keys.NUM_PARTITIONS]) != cfg.federation.num_clients:  # type: ignore[arg-type]
            raise DataError(
                f"node config num-partitions={nc[keys.NUM_PARTITIONS]} but federation.num_clients="
                f"{cfg.federation.num_clients}"
            )
    data_dir = nc.get(keys.DATA_DIR)
    if data_dir:
        return cfg.replace(**{"stream.data_dir": str(data_dir)})
    return cfg


def node_info_query(node_id: int) -> Message:
    """The server's question to one node: which partition do you hold?"""
    return Message(content=RecordDict({}), message_type=NODE_INFO_TYPE, dst_node_id=node_id)


def node_info_reply(msg: Message, context: Context) -> Message:
    """The ``query.node_info`` handler: the node's partition (-1 when it has none)."""
    nc = context.node_config
    info = ConfigRecord({
        keys.PARTITION_ID: int(nc.get(keys.PARTITION_ID, -1)),  # type: ignore[arg-type]
        keys.NUM_PARTITIONS: int(nc.get(keys.NUM_PARTITIONS, -1)),  # type: ignore[arg-type]
    })
    return Message(content=RecordDict({keys.CONFIG: info}), reply_to=msg)


def partition_of(reply: Message) -> int:
    """The partition a ``query.node_info`` reply names (-1: none, or an error reply)."""
    rec = None if reply.has_error() else reply.content.get(keys.CONFIG)
    return int(rec.get(keys.PARTITION_ID, -1)) if isinstance(rec, ConfigRecord) else -1  # type: ignore[arg-type]
