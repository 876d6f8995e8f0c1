"""Per-client method-state size: plain mean and max over a round's replies, and the run summary."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from fedcl import keys
from fedcl.metrics.client_stats import reply_metric_stats, state_bytes_row, state_bytes_summary


def _reply(state_bytes: int | None, n: int) -> Message:
    request = Message(RecordDict({keys.CONFIG: ConfigRecord({})}), dst_node_id=1, message_type=MessageType.TRAIN)
    metrics: dict[str, int | float] = {keys.NUM_EXAMPLES: n}
    if state_bytes is not None:
        metrics[keys.STATE_BYTES] = state_bytes
    content = RecordDict(
        {keys.ARRAYS: ArrayRecord({"w": Array(np.zeros(1, dtype=np.float32))}), keys.METRICS: MetricRecord(metrics)}
    )
    return Message(content, reply_to=request)


def test_state_bytes_are_unweighted_mean_and_max_over_clients(message_identity: None) -> None:
    # Prepare: sample counts very different, so a num-examples-weighted mean would differ
    replies = [_reply(100, 1), _reply(300, 1000), _reply(None, 5)]
    # Execute
    row = state_bytes_row(replies)
    # Assert
    assert row == {"state_bytes": 200.0, "state_bytes_max": 300.0}


def test_no_reply_reports_the_metric_gives_none(message_identity: None) -> None:
    # Prepare
    replies = [_reply(None, 3)]
    # Execute / Assert
    assert reply_metric_stats(replies, keys.STATE_BYTES) is None
    assert state_bytes_row(replies) == {"state_bytes": None, "state_bytes_max": None}


def test_summary_is_mean_of_round_means_and_max_of_round_maxima() -> None:
    # Prepare
    rows = [{"state_bytes": 10.0, "state_bytes_max": 20.0}, {"state_bytes": 30.0, "state_bytes_max": 50.0},
            {"state_bytes": None, "state_bytes_max": None}]
    # Execute
    summary = state_bytes_summary(rows)
    # Assert
    assert summary == {"state_bytes_mean": 20.0, "state_bytes_max": 50.0}
