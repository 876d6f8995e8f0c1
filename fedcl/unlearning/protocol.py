"""The unlearning message contract: the keys, the ``query.unlearn`` message, its reply, and what train replies add.

The server (``strategies/unlearning.py``) asks clients for one *action* on their data
(``fisher``: Fisher sums on forget / retain data; ``gradient``: gradient sums on forget /
retain data; ``ascent``: gradient ascent on the forget data; ``train``: SGD on the retain
data) over the data its ``access`` rule allows (``history``: every seen task's data;
``buffer``: the client's current task and its replay buffer) with :func:`query`; the client
(:mod:`fedcl.unlearning.client`) reads it with :func:`options` and answers with the
records named here. Served requests also change ``train`` messages: the classes every
client drops (``forget-classes``), the samples their clients drop (``forget-samples``,
JSON of :mod:`fedcl.unlearning.data`) and, for methods that keep individual updates, the
request to name the client in the reply (``report-client-id`` / ``unlearn-info``).
:func:`exclusions` reads the first two (with the run's held-out fraction) on the client.
"""

from __future__ import annotations

import json
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

import fedcl.keys as keys
from fedcl.unlearning.data import Exclusions, decode_samples

UNLEARN = "unlearn"  # the query action (message type "query.unlearn")
UNLEARN_TYPE = f"{MessageType.QUERY}.{UNLEARN}"
ACTIONS = ("fisher", "gradient", "ascent", "train")
ACCESS = ("history", "buffer")  # unlearning.data_access: what a client still holds
OPTIONS = "unlearn-options"  # server -> client: the query's options (JSON string)
INFO = "unlearn-info"  # client -> server ConfigRecord with the logical client id
REPORT_CLIENT_ID = "report-client-id"  # server -> client (train config): add INFO to the reply (FedEraser)
FISHER_FORGET = "fisher-forget"  # client -> server: sum of squared per-sample gradients on forget data
FISHER_RETAIN = "fisher-retain"  # client -> server: the same on retain data
FISHER_KEYS = (FISHER_FORGET, FISHER_RETAIN)
GRAD_FORGET = "grad-forget"  # client -> server: sum over forget samples of the loss gradient (IAU)
GRAD_RETAIN = "grad-retain"  # the same on retain data
GRAD_KEYS = (GRAD_FORGET, GRAD_RETAIN)
FORGET_SAMPLES = "forget-samples"  # server -> client (train config): JSON of the forgotten samples
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


def exclusions(instr: Any) -> Exclusions:
    """What a client may train on: the run's held-out fraction, the forgotten classes and samples of its config."""
    return Exclusions.of_run(instr.cfg, instr.forget_classes, decode_samples(instr.get(FORGET_SAMPLES)))
