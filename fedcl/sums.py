"""The "sum these arrays over clients and send the sums back" contract (FedCurv's message half).

A method puts tensors in ``ctx.outbox[name]``; the client sends them as the ArrayRecord
``sum-<name>`` (:func:`outbox_records`); the server adds each over the round's replies
and sends the sums to every client next round under the same name, with a
``sums-meta`` record naming the round they came from and how many clients they hold
(``strategies/extra_sums.py``, :func:`payload_records`); a method reads them back with
:func:`received`. Only sums are needed, so the uplink is compatible with secure
aggregation. Used by FedCurv (Shoham et al., NeurIPS 2019 workshop).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord

from fedcl.records import array_record

PREFIX = "sum-"  # client -> server and back: ArrayRecords summed over the round's clients
META = "sums-meta"  # server -> client ConfigRecord: the round the sums came from and how many clients
META_ROUND = "round"
META_CLIENTS = "clients"


def outbox_records(outbox: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, ArrayRecord]:
    """A client's ``ctx.outbox`` as reply records ``sum-<name>``."""
    return {PREFIX + name: array_record(arrays) for name, arrays in outbox.items()}


def is_sum_record(name: str, record: Any) -> bool:
    """Whether a reply record is one the server must sum."""
    return name.startswith(PREFIX) and isinstance(record, ArrayRecord)


def payload_records(sums: Mapping[str, Mapping[str, np.ndarray]], server_round: int, clients: int
                    ) -> dict[str, ArrayRecord | ConfigRecord]:
    """What every client receives next round: each summed record (float32) and the ``sums-meta`` record."""
    out: dict[str, ArrayRecord | ConfigRecord] = {name: array_record(arrs, np.float32) for name, arrs in sums.items()}
    out[META] = ConfigRecord({META_ROUND: server_round, META_CLIENTS: clients})
    return out


def received(payload: Mapping[str, Any], name: str) -> tuple[dict[str, torch.Tensor], int] | None:
    """The sums of ``name`` a client received and the round they came from (``None`` before any)."""
    rec = payload.get(PREFIX + name)
    if rec is None:
        return None
    meta = payload.get(META)
    sums_round = int(meta[META_ROUND]) if meta is not None and META_ROUND in meta else -2
    return {k: torch.from_numpy(a.numpy().copy()) for k, a in rec.items()}, sums_round
