"""FOT's GPSE message contract: the keys, the query the server sends, the reply a client returns, and its checks.

At the end of a task the server sends each client that trained it a ``query.gpse``
message with the final global model and the current bases; the client answers with
its sketches ``Y_i`` per layer and the summable statistics ``n_i r_i`` and ``n_i``
(:mod:`fedcl.fot.client`); the server sums them (:mod:`strategies.fot`). With
``strategy.gpse_model=local`` (the official code) the bases ride on the train messages
of a task's last round instead and the same records on the train replies. Both halves
build and read the records only through this module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

import fedcl.keys as keys
from fedcl.records import array_record, non_finite_reason

RecordType = ArrayRecord | MetricRecord | ConfigRecord  # what a RecordDict holds
GPSE = "gpse"  # the query action
GPSE_TYPE = f"{MessageType.QUERY}.{GPSE}"
BASES = "fot-bases"  # server -> client: orthonormal basis per projected layer
SKETCH = "fot-sketch"  # client -> server: GPSE sketch Y_i per layer
STATS = "fot-stats"  # client -> server: n_i r_i per layer ("<layer>/ratio-weighted") and n_i ("num-examples")
RATIO_SUFFIX = "/ratio-weighted"


def gpse_query(arrays: ArrayRecord, config: ConfigRecord, bases: dict[str, torch.Tensor], node: int) -> Message:
    """The server's GPSE question to one client: the final global model and the bases (float32)."""
    content = RecordDict({keys.ARRAYS: arrays, keys.CONFIG: config, BASES: array_record(bases, np.float32)})
    return Message(content=content, message_type=GPSE_TYPE, dst_node_id=node)


def query_bases(msg: Message) -> dict[str, np.ndarray]:
    """The bases a GPSE query carries (none before the first task's end)."""
    rec = msg.content.get(BASES)
    return {k: v.numpy() for k, v in rec.items()} if isinstance(rec, ArrayRecord) else {}


def gpse_records(sketches: dict[str, np.ndarray], ratios: dict[str, float], n: float) -> dict[str, RecordType]:
    """A client's GPSE statistics as records: its sketches, ``n_i r_i`` per layer and ``n_i``."""
    stats: dict[str, int | float | list[int] | list[float]] = {keys.NUM_EXAMPLES: float(n)}
    stats.update({f"{layer}{RATIO_SUFFIX}": float(v) for layer, v in ratios.items()})
    return {SKETCH: array_record(sketches, np.float32), STATS: MetricRecord(stats)}


def gpse_reply(msg: Message, sketches: dict[str, np.ndarray], ratios: dict[str, float], n: float) -> Message:
    """A client's answer to a GPSE query: :func:`gpse_records`."""
    return Message(content=RecordDict(gpse_records(sketches, ratios, n)), reply_to=msg)


def with_bases(content: RecordDict, bases: dict[str, torch.Tensor]) -> None:
    """Add the bases to a train message (official GPSE: the client sketches against them after training)."""
    content[BASES] = array_record(bases, np.float32)


def local_records(extra: dict[str, object]) -> RecordDict | None:
    """The GPSE records a train reply carries (``strategy.gpse_model=local``), or ``None``."""
    if SKETCH not in extra and STATS not in extra:
        return None
    return RecordDict({k: v for k, v in extra.items() if k in (SKETCH, STATS)})  # type: ignore[misc]


def reply_records(reply: Message) -> tuple[ArrayRecord, MetricRecord]:
    """A checked reply's sketch record and statistics record."""
    return content_records(reply.content)


def content_records(content: RecordDict) -> tuple[ArrayRecord, MetricRecord]:
    """The sketch record and statistics record of checked GPSE content (a query reply or a train reply's part)."""
    sketch, stats = content[SKETCH], content[STATS]
    assert isinstance(sketch, ArrayRecord) and isinstance(stats, MetricRecord)
    return sketch, stats


def split_stats(summed: dict[str, float]) -> tuple[dict[str, float], float]:
    """``sum n_i r_i`` per layer and ``sum n_i`` out of the summed statistics records."""
    ratios = {k[: -len(RATIO_SUFFIX)]: v for k, v in summed.items() if k.endswith(RATIO_SUFFIX)}
    return ratios, float(summed.get(keys.NUM_EXAMPLES, 0.0))


def check_reply(content: RecordDict, check_count: Callable[[MetricRecord, str], str | None]) -> str | None:
    """Why a GPSE reply must not be summed (missing records, NaN / Inf, a bad count), or ``None``."""
    sketch = content.get(SKETCH)
    if not isinstance(sketch, ArrayRecord):
        return f"record '{SKETCH}' missing or not an ArrayRecord"
    stats = content.get(STATS)
    if not isinstance(stats, MetricRecord):
        return f"record '{STATS}' missing or not a MetricRecord"
    if keys.NUM_EXAMPLES in stats:
        reason = check_count(stats, keys.NUM_EXAMPLES)
        if reason:
            return reason
    return non_finite_reason(content)


def signature(content: RecordDict) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """Names, shapes and dtypes of a reply's sketches (all sound replies share one)."""
    sketch = content[SKETCH]
    assert isinstance(sketch, ArrayRecord)
    return tuple(sorted((k, tuple(a.shape), str(a.dtype)) for k, a in sketch.items()))


def majority_signature(contents: list[RecordDict]) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """The sketch layout most replies share (ties: the first in canonical order)."""
    return Counter(signature(c) for c in contents).most_common(1)[0][0]
