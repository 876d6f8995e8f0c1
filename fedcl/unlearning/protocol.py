"""The unlearning message contract: the keys, the ``query.unlearn`` message, its reply, and what train replies add.

The server (``strategies/unlearning.py``) asks clients for one *action* on their data
(``fisher``: Fisher sums on forget / retain data; ``ascent``: gradient ascent on the
forget data; ``train``: SGD on the retain data) with :func:`query`; the client
(:mod:`fedcl.unlearning.client`) reads it with :func:`options` and answers with the
records named here. Served requests also change ``train`` messages: the classes every
client drops (``forget-classes``) and, for methods that keep individual updates, the
request to name the client in the reply (``report-client-id`` / ``unlearn-info``).
"""

from __future__ import annotations

import json
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

import fedcl.keys as keys

UNLEARN = "unlearn"  # the query action (message type "query.unlearn")
UNLEARN_TYPE = f"{MessageType.QUERY}.{UNLEARN}"
ACTIONS = ("fisher", "ascent", "train")
OPTIONS = "unlearn-options"  # server -> client: the query's options (JSON string)
INFO = "unlearn-info"  # client -> server ConfigRecord with the logical client id
REPORT_CLIENT_ID = "report-client-id"  # server -> client (train config): add INFO to the reply (FedEraser)
FISHER_FORGET = "fisher-forget"  # client -> server: sum of squared per-sample gradients on forget data
FISHER_RETAIN = "fisher-retain"  # client -> server: the same on retain data
FISHER_KEYS = (FISHER_FORGET, FISHER_RETAIN)
NUM_FORGET = "num-forget"
NUM_RETAIN = "num-retain"


def query(arrays: ArrayRecord, config: ConfigRecord, options: dict[str, Any], node: int) -> Message:
    """An unlearning query to one client: the model to start from, who / which round, and the action's options."""
    rec = ConfigRecord({**dict(config), OPTIONS: json.dumps(options, sort_keys=True)})
    return Message(content=RecordDict({keys.ARRAYS: arrays, keys.CONFIG: rec}), message_type=UNLEARN_TYPE,
                   dst_node_id=node)


def options(record: ConfigRecord) -> dict[str, Any]:
    """The options of a query's config record."""
    opts: dict[str, Any] = json.loads(str(record[OPTIONS]))
    return opts


def client_info(client_id: int) -> ConfigRecord:
    """The record a reply carries when the server asked whose it is."""
    return ConfigRecord({keys.CLIENT_ID: client_id})


def reporting_client(reply: Message) -> int | None:
    """The client a reply names (``None`` when it names none)."""
    rec = reply.content.config_records.get(INFO) if reply.has_content() else None
    return int(rec[keys.CLIENT_ID]) if rec is not None else None  # type: ignore[arg-type]
