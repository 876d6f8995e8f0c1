"""Order-independent server arithmetic: the one rule for everything computed from several replies.

Ray returns replies in whatever order its actors finish, and float32 sums taken in
that order differ in their last bits from run to run: over a continual run the
differences grow into different accuracies (issue 16). The rule, applied here and
nowhere else:

1. **Canonical order.** A round's replies are paired with the logical client each
   addressed and sorted by client id (:func:`canonical_replies`), before anything is
   validated, summed or logged. Every consumer (FedAvg and the robust aggregators,
   DP's clipped mean, FOT's GPSE sums, FedCurv's extra sums, unlearning queries,
   local-forgetting records, per-client statistics) receives them in that order.
2. **float64 accumulation.** Weighted means and sums accumulate in float64 and are cast
   back to the clients' dtype once, at the end (:func:`weighted_mean`,
   :func:`sum_arrays`, :func:`weighted_metrics`), so the result is also as exact as
   float64 allows.

With both, the same replies give bit-identical aggregates whatever order they
arrive in (``tests/strategies/test_aggregation.py`` permutes them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

import fedcl.keys as keys


def client_of(msg: Message) -> int:
    """The logical client a sent message addresses (its config record's ``client-id``; -1 if none)."""
    rec = msg.content.get(keys.CONFIG) if msg.has_content() else None
    if isinstance(rec, ConfigRecord) and keys.CLIENT_ID in rec:
        return int(rec[keys.CLIENT_ID])  # type: ignore[arg-type]
    return -1


def canonical_replies(
    sent: Sequence[Message], replies: Iterable[Message]
) -> tuple[list[tuple[int, Message]], list[int]]:
    """Pair each reply with its logical client, sorted by client id; list the clients without a reply.

    Replies are matched by ``reply_to_message_id`` (set once the grid has pushed the
    messages). Messages never pushed (hand-built in unit tests) have no id: then
    replies are taken in the order the messages were sent. Replies that match no sent
    message get client -1 and come first. Ties (several replies for one client) keep
    the message order, which is itself canonical (messages are built in client order).
    """
    replies = list(replies)
    ids = [m.metadata.message_id for m in sent]
    clients = [client_of(m) for m in sent]
    if all(ids) and len(set(ids)) == len(ids):
        position = {mid: i for i, mid in enumerate(ids)}
        slots = [position.get(r.metadata.reply_to_message_id, -1) for r in replies]
    else:
        slots = [i if i < len(sent) else -1 for i in range(len(replies))]
    pairs = [(clients[s] if s >= 0 else -1, s, r) for s, r in zip(slots, replies, strict=True)]
    pairs.sort(key=lambda p: (p[0], p[1]))
    answered = {c for c, _, _ in pairs}
    missing = [c for c in clients if c not in answered]
    return [(c, r) for c, _, r in pairs], missing


def in_canonical_order(sent: Sequence[Message], replies: Iterable[Message]) -> list[Message]:
    """``replies`` sorted by the logical client they answer (see :func:`canonical_replies`)."""
    return [r for _, r in canonical_replies(sent, replies)[0]]


def weighted_mean(records: Sequence[ArrayRecord], weights: Sequence[float]) -> ArrayRecord:
    """``sum_i w_i x_i / sum_i w_i`` per array, accumulated in float64, cast to the first record's dtypes.

    Non-float arrays (integer buffers) take the same weighted mean and are rounded back.
    """
    if not records:
        raise ValueError("weighted_mean needs at least one record")
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if not total > 0:
        raise ValueError(f"weighted_mean: the weights sum to {total}")
    out: dict[str, Array] = {}
    for name, ref in records[0].items():
        acc = np.zeros(tuple(ref.shape), dtype=np.float64)
        for rec, wi in zip(records, w, strict=True):
            acc += rec[name].numpy().astype(np.float64) * (wi / total)
        dtype = ref.numpy().dtype
        if not np.issubdtype(dtype, np.inexact):
            acc = np.rint(acc)
        out[name] = Array(np.ascontiguousarray(acc.astype(dtype)))
    return ArrayRecord(out)


def sum_arrays(records: Iterable[ArrayRecord]) -> dict[str, np.ndarray]:
    """Element-wise float64 sum of each named array over ``records`` (shapes must agree)."""
    sums: dict[str, np.ndarray] = {}
    for rec in records:
        for name, arr in rec.items():
            x = arr.numpy().astype(np.float64)
            if name in sums:
                if sums[name].shape != x.shape:
                    raise ValueError(f"array {name!r}: shape {x.shape} != {sums[name].shape}")
                sums[name] += x
            else:
                sums[name] = x.copy()
    return sums


def sum_metrics(records: Iterable[MetricRecord]) -> dict[str, float]:
    """Sum of each scalar metric over ``records`` (lists are skipped)."""
    out: dict[str, float] = {}
    for rec in records:
        for k, v in rec.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0.0) + float(v)
    return out


def weighted_metrics(records: Sequence[MetricRecord], weight_key: str) -> MetricRecord:
    """``sum_i n_i m_i / sum_i n_i`` for every metric but the weight itself (Flower's rule, in float64).

    A metric that only some replies report is averaged over those that do (weights
    renormalised): averaging it as if absent meant 0 would bias it towards 0.
    """
    weights = [float(r[weight_key]) for r in records]  # type: ignore[arg-type]
    num: dict[str, float | list[float]] = {}
    den: dict[str, float] = {}
    for rec, w in zip(records, weights, strict=True):
        for k, v in rec.items():
            if k == weight_key:
                continue
            if isinstance(v, list):
                prev = num.get(k)
                vals = [float(x) * w for x in v]  # type: ignore[arg-type]
                num[k] = vals if not isinstance(prev, list) else [a + b for a, b in zip(prev, vals, strict=True)]
            else:
                num[k] = float(num.get(k, 0.0)) + float(v) * w  # type: ignore[arg-type]
            den[k] = den.get(k, 0.0) + w
    out = MetricRecord()
    for k, v in num.items():
        d = den[k] if den[k] > 0 else 1.0
        out[k] = [x / d for x in v] if isinstance(v, list) else v / d
    return out


def fedavg(contents: Sequence[RecordDict], weight_key: str) -> tuple[ArrayRecord, MetricRecord]:
    """FedAvg's aggregate of validated replies (``arrays`` and ``metrics`` records), order-independent."""
    arrays = [c[keys.ARRAYS] for c in contents]
    metrics = [c[keys.METRICS] for c in contents]
    assert all(isinstance(a, ArrayRecord) for a in arrays) and all(isinstance(m, MetricRecord) for m in metrics)
    weights = [float(m[weight_key]) for m in metrics]  # type: ignore[arg-type,index]
    return weighted_mean(arrays, weights), weighted_metrics(metrics, weight_key)  # type: ignore[arg-type]


def metric_mean(contents: Sequence[RecordDict], weight_key: str) -> MetricRecord:
    """The weighted metric average of replies (``train_metrics_aggr_fn`` for Flower's strategies)."""
    return weighted_metrics([c[keys.METRICS] for c in contents], weight_key)  # type: ignore[misc]
