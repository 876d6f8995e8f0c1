"""Per-client statistics of a round's train replies (e.g. the method-state size of every client).

Flower's FedAvg averages reply metrics weighted by ``num-examples``; a memory figure
wants the plain mean and the maximum over the clients of the round instead (the
largest client is what a device must hold).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import Message, MetricRecord

import fedcl.keys as keys


def reply_metric_stats(replies: Iterable[Message], key: str) -> tuple[float, float] | None:
    """Mean and max of metric ``key`` over the successful replies that report it (``None`` if none do)."""
    values: list[float] = []
    for r in replies:
        if r.has_error():
            continue
        rec = r.content.get(keys.METRICS)
        if isinstance(rec, MetricRecord) and key in rec:
            values.append(float(rec[key]))  # type: ignore[arg-type]
    if not values:
        return None
    return sum(values) / len(values), max(values)


def state_bytes_row(replies: Iterable[Message]) -> dict[str, float | None]:
    """``state_bytes`` (mean over the round's clients) and ``state_bytes_max`` for a ``metrics.jsonl`` row."""
    stats = reply_metric_stats(replies, keys.STATE_BYTES)
    mean, peak = stats if stats is not None else (None, None)
    return {"state_bytes": mean, "state_bytes_max": peak}


def state_bytes_summary(rows: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """Run-level state size: mean of the per-round means and the largest client of any round."""
    means = [float(r["state_bytes"]) for r in rows if r.get("state_bytes") is not None]
    peaks = [float(r["state_bytes_max"]) for r in rows if r.get("state_bytes_max") is not None]
    return {
        "state_bytes_mean": sum(means) / len(means) if means else None,
        "state_bytes_max": max(peaks) if peaks else None,
    }
