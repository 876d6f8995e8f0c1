"""Reply validation for the FCL strategies: no broken or poisoned reply reaches the global model.

A reply is refused, with the reason logged, when it carries an error, misses the
``arrays`` / ``metrics`` records, holds NaN or Inf, has arrays whose names,
shapes or dtypes differ from the global model that was sent, or reports an absurd
``num-examples`` (not a positive integer, or above ``max_examples``). Flower's own
check (``validate_message_reply_consistency``) raises on the first inconsistent
reply and so would abort the whole round; here the bad reply is dropped and the
round goes on with the others (Blanchard et al., "Machine Learning with
Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017, motivate the
robust aggregators of :mod:`strategies.robust` for replies that pass these checks).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

import fedcl.keys as keys
from fedcl.records import non_finite_reason
from strategies.aggregation import canonical_replies
from strategies.round_faults import RoundFaults

log = logging.getLogger("fedcl")

MAX_NUM_EXAMPLES = 10**9  # no client of a simulation holds a billion samples: a larger weight is a forgery


def _is_count(v: Any) -> bool:
    """An integer (or integral float) sample count."""
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    return isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer()


def check_num_examples(metrics: MetricRecord, key: str, max_examples: int) -> str | None:
    """Why ``metrics[key]`` is not a sane sample count, or ``None``."""
    if key not in metrics:
        return f"metric '{key}' missing"
    n = metrics[key]
    if not _is_count(n):
        return f"'{key}' = {n!r} is not an integer"
    if not 0 < float(n) <= max_examples:  # type: ignore[arg-type]
        return f"'{key}' = {n!r} is outside [1, {max_examples}]"
    return None


def check_arrays_like(arrays: ArrayRecord, reference: ArrayRecord) -> str | None:
    """Why ``arrays`` does not match the names, shapes and dtypes of ``reference``, or ``None``."""
    missing = [k for k in reference if k not in arrays]
    if missing:
        return f"arrays missing {missing[:3]}{'...' if len(missing) > 3 else ''}"
    extra = [k for k in arrays if k not in reference]
    if extra:
        return f"unexpected arrays {extra[:3]}{'...' if len(extra) > 3 else ''}"
    for k, ref in reference.items():
        a = arrays[k]
        if tuple(a.shape) != tuple(ref.shape):
            return f"array '{k}' has shape {tuple(a.shape)}, the global model's is {tuple(ref.shape)}"
        if a.dtype != ref.dtype:
            return f"array '{k}' has dtype {a.dtype}, the global model's is {ref.dtype}"
    return None


def check_train_reply(
    content: RecordDict, reference: ArrayRecord | None, weighted_by_key: str, max_examples: int = MAX_NUM_EXAMPLES
) -> str | None:
    """Why a ``train`` reply must not be aggregated, or ``None`` when it is sound.

    Parameters
    ----------
    content : RecordDict
        The reply's content.
    reference : ArrayRecord | None
        The global arrays sent this round (names, shapes and dtypes to match); ``None`` skips that check.
    weighted_by_key : str
        The sample-count metric (``num-examples``).
    max_examples : int
        Largest credible sample count.
    """
    arrays = content.get(keys.ARRAYS)
    if not isinstance(arrays, ArrayRecord):
        return f"record '{keys.ARRAYS}' missing or not an ArrayRecord"
    metrics = content.get(keys.METRICS)
    if not isinstance(metrics, MetricRecord):
        return f"record '{keys.METRICS}' missing or not a MetricRecord"
    reason = check_num_examples(metrics, weighted_by_key, max_examples)
    if reason:
        return reason
    if reference is not None:
        reason = check_arrays_like(arrays, reference)
        if reason:
            return reason
    return non_finite_reason(content)  # the model and every strategy payload (sums, sketches)


def short_reason(text: str | None, limit: int = 300) -> str:
    """The exception message inside Flower's error reason (which may hold a whole Ray traceback)."""
    lines = [x.strip() for x in str(text).splitlines() if x.strip()]
    for line in reversed(lines):
        if "Message: " in line:  # Flower's "Exception ClientAppException occurred. Message: <the cause>"
            return line.split("Message: ", 1)[1].rstrip("'>")[:limit]
    return (lines[-1] if lines else "unknown error")[:limit]


class ReplyValidator:
    """Splits the replies of a round into sound ones and failed / rejected clients.

    Parameters
    ----------
    weighted_by_key : str, default "num-examples"
        The sample-count metric of train replies.
    max_examples : int, default 10**9
        Largest credible ``num-examples``.
    """

    def __init__(self, weighted_by_key: str = keys.NUM_EXAMPLES, max_examples: int = MAX_NUM_EXAMPLES) -> None:
        self.weighted_by_key = weighted_by_key
        self.max_examples = max_examples

    def split(
        self, what: str, sent: list[Message], replies: list[Message], check: Any, log_faults: bool = True
    ) -> tuple[list[Message], RoundFaults]:
        """The replies ``check`` (content -> reason or None) accepts, in canonical order, and the round's faults."""
        # canonical order (by logical client) before anything is computed from the replies
        pairs, missing = canonical_replies(sent, replies)
        faults = RoundFaults(sent=len(sent) if sent else len(replies))
        for c in missing:
            faults.failed[c] = "no reply (timed out or disappeared)"
        good: list[Message] = []
        for c, r in pairs:
            if r.has_error():
                faults.failed[c] = f"error reply: {short_reason(r.error.reason)}"
                continue
            reason = check(r.content)
            if reason:
                faults.rejected[c] = reason
                continue
            good.append(r)
            faults.accepted.append(c)
        for c, reason in ({**faults.failed, **faults.rejected} if log_faults else {}).items():
            log.warning("%s: client %d %s: %s", what, c, "failed" if c in faults.failed else "rejected", reason)
        return good, faults

    def split_train(
        self, sent: list[Message], replies: list[Message], reference: ArrayRecord | None, log_faults: bool = True
    ) -> tuple[list[Message], RoundFaults]:
        """The sound ``train`` replies and the round's faults (logged unless ``log_faults`` is false)."""
        return self.split(
            "train", sent, replies,
            lambda content: check_train_reply(content, reference, self.weighted_by_key, self.max_examples),
            log_faults,
        )

    def split_query(self, what: str, sent: list[Message], replies: list[Message]) -> tuple[list[Message], RoundFaults]:
        """The sound replies of a query whose records are summed (no error, everything finite) and the faults."""
        return self.split(what, sent, replies, non_finite_reason)

    def count_reason(self, metrics: MetricRecord, key: str) -> str | None:
        """Why ``metrics[key]`` is not a credible sample count (at most ``max_examples``), or ``None``."""
        return check_num_examples(metrics, key, self.max_examples)
