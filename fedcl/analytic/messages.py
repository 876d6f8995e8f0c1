"""The analytic statistics' message contract: keys, query and reply builders, parsers and checks.

Both halves go through this module only: the server (``strategies/analytic.py``) sends a
``query.analytic`` message per client with the frozen backbone's arrays and a config record
(:func:`query_options`: ``learn`` the statistics of some tasks, or ``forget`` those of a
deletion request); the client (:mod:`fedcl.analytic.client`) answers with one ArrayRecord
:data:`STATS` of three float64 arrays: the Gram's upper triangle (diagonal included)
flattened row by row, ``X^T Y`` and the class counts. Sending the triangle halves the bytes of
``d_e x d_e``; a sum of triangles is the triangle of the sum, so SecAgg+ and the server's sums
work on it unchanged. Under SecAgg+ each array travels multiplied by a scale the server
chooses (:data:`SCALE`), so that Flower's quantiser range fits the statistics' bound. The
wiring is in ``docs/analytic.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

import fedcl.keys as keys
from fedcl.analytic.ridge import Statistics
from fedcl.errors import ClientReplyError

ANALYTIC = "analytic"  # query action: message type "query.analytic"
ANALYTIC_TYPE = f"{MessageType.QUERY}.{ANALYTIC}"
STATS = "analytic-stats"  # client -> server ArrayRecord
GRAM_TRIU = "gram-triu"  # float64 [d (d + 1) / 2]
CROSS = "cross"  # float64 [d, C]
COUNTS = "class-counts"  # float64 [C]
ARRAY_NAMES = (GRAM_TRIU, CROSS, COUNTS)
# server -> client ConfigRecord keys
PURPOSE = "analytic-purpose"  # "learn" (the tasks' data) | "forget" (data of a deletion request)
PURPOSES = ("learn", "forget")
TASKS = "analytic-tasks"  # list[int]: the tasks whose data the statistics cover
FORGET_CLASSES = "analytic-forget-classes"  # list[int]: "forget" of a class request: only these labels
SCALE = "analytic-scale"  # list[float] [gram, cross, counts]: each array is sent multiplied by its factor
RELEASE_COUNTS = "analytic-release-counts"  # bool: false under DP (class counts are not released)
# Counts may come back as near-integers from SecAgg+'s quantisation (error ~ 2 n / 2^22 per client)
COUNT_TOL = 1e-3


@dataclass(frozen=True)
class Query:
    """What a ``query.analytic`` asks of one client (the parsed config record).

    Parameters
    ----------
    purpose : str
        ``learn`` or ``forget``.
    tasks : list[int]
        Tasks whose data the statistics cover.
    only_classes : list[int]
        ``forget`` of a class request: only samples with these labels (empty: all).
    scale : tuple[float, float, float]
        Factors of the Gram triangle, ``X^T Y`` and the counts in the reply.
    release_counts : bool
        Whether the class counts travel (not under DP: zeros instead).
    """

    purpose: str
    tasks: list[int]
    only_classes: list[int]
    scale: tuple[float, float, float]
    release_counts: bool


def query_options(purpose: str, tasks: Sequence[int], *, only_classes: Sequence[int] = (),
                  scale: Sequence[float] = (1.0, 1.0, 1.0), release_counts: bool = True) -> dict[str, Any]:
    """The analytic keys of a query's config record (merged into ``query_config``)."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    return {PURPOSE: purpose, TASKS: [int(t) for t in tasks], FORGET_CLASSES: [int(c) for c in only_classes],
            SCALE: [float(s) for s in scale], RELEASE_COUNTS: bool(release_counts)}


def stats_query(body: ArrayRecord, config: ConfigRecord, node: int) -> Message:
    """The server's question to one client: the frozen backbone's arrays (``body.*``) and the config."""
    return Message(content=RecordDict({keys.ARRAYS: body, keys.CONFIG: config}), message_type=ANALYTIC_TYPE,
                   dst_node_id=node)


def parse_query(record: Mapping[str, Any]) -> Query:
    """The client half: the analytic keys of a query's config record."""
    purpose = str(record[PURPOSE])
    if purpose not in PURPOSES:
        raise ValueError(f"{PURPOSE} must be one of {PURPOSES}, got {purpose!r}")
    scale = [float(s) for s in record[SCALE]]
    if len(scale) != 3:
        raise ValueError(f"{SCALE} must hold 3 factors, got {scale}")
    return Query(purpose, [int(t) for t in record[TASKS]], [int(c) for c in record[FORGET_CLASSES]],
                 (scale[0], scale[1], scale[2]), bool(record[RELEASE_COUNTS]))


def stats_reply(msg: Message, stats: Statistics, scale: Sequence[float] = (1.0, 1.0, 1.0)) -> Message:
    """A client's answer: its :class:`Statistics`, each array multiplied by its factor of ``scale``."""
    rec = stats_record(stats)
    scaled = ArrayRecord({name: Array(np.ascontiguousarray(rec[name].numpy() * float(f)))
                          for name, f in zip(ARRAY_NAMES, scale, strict=True)})
    return Message(content=RecordDict({STATS: scaled}), reply_to=msg)


def check_reply(content: RecordDict, dim: int, num_classes: int) -> str | None:
    """Why one reply must not be summed (record or array missing, wrong shape, NaN / Inf), or ``None``.

    Counts are checked on the sum (:func:`sum_replies`): under SecAgg+ a reply is a share of it.
    """
    rec = content.get(STATS)
    if not isinstance(rec, ArrayRecord):
        return f"record {STATS!r} missing or not an ArrayRecord"
    want = {GRAM_TRIU: (triu_size(dim),), CROSS: (dim, num_classes), COUNTS: (num_classes,)}
    for name, shape in want.items():
        if name not in rec:
            return f"array {name!r} missing from {STATS!r}"
        a = rec[name].numpy()
        if tuple(a.shape) != shape:
            return (f"{name!r} has shape {tuple(a.shape)}, expected {shape} (d_e={dim}, {num_classes} classes: "
                    "same strategy.expansion_dim everywhere)")
        if not np.isfinite(a).all():
            return f"{name!r} has non-finite entries"
    return None


def reply_stats(reply: Message) -> ArrayRecord:
    """The :data:`STATS` record of a checked reply."""
    rec = reply.content[STATS]
    assert isinstance(rec, ArrayRecord)
    return rec


def unscale(summed: Mapping[str, np.ndarray], scale: Sequence[float]) -> ArrayRecord:
    """The float64 sum of replies with each array divided by its factor again (as a :data:`STATS` record)."""
    return ArrayRecord({name: Array(np.ascontiguousarray(np.asarray(summed[name], dtype=np.float64) / float(f)))
                        for name, f in zip(ARRAY_NAMES, scale, strict=True)})


def triu_size(dim: int) -> int:
    return dim * (dim + 1) // 2


def pack_gram(gram: torch.Tensor) -> np.ndarray:
    """The upper triangle of a symmetric ``[d, d]``, row by row: float64 ``[d (d + 1) / 2]``."""
    g = gram.detach().to(torch.float64).cpu().numpy()
    return np.ascontiguousarray(g[np.triu_indices(g.shape[0])])


def unpack_gram(flat: np.ndarray, dim: int) -> torch.Tensor:
    """Inverse of :func:`pack_gram`: the symmetric ``[d, d]`` (float64)."""
    g = np.zeros((dim, dim), dtype=np.float64)
    rows, cols = np.triu_indices(dim)
    g[rows, cols] = flat
    g[cols, rows] = flat
    return torch.from_numpy(g)


def stats_record(stats: Statistics) -> ArrayRecord:
    """The client half: a :class:`Statistics` as the :data:`STATS` record (float64, CPU)."""
    return ArrayRecord({
        GRAM_TRIU: Array(pack_gram(stats.gram)),
        CROSS: Array(np.ascontiguousarray(stats.cross.detach().to(torch.float64).cpu().numpy())),
        COUNTS: Array(np.ascontiguousarray(stats.class_counts.detach().to(torch.float64).cpu().numpy())),
    })


def parse_stats(record: object, dim: int, num_classes: int, count_tol: float = COUNT_TOL) -> Statistics:
    """The server half: check a reply's :data:`STATS` record and return its :class:`Statistics`.

    Raises
    ------
    ClientReplyError
        Not an ArrayRecord, an array missing or of the wrong size (another
        ``strategy.expansion_dim`` or class count), non-finite entries, or counts that are
        not non-negative integers (within ``count_tol``: SecAgg+'s quantisation error).
    """
    if not isinstance(record, ArrayRecord):
        raise ClientReplyError(f"analytic reply: record {STATS!r} missing or not an ArrayRecord")
    want = {GRAM_TRIU: (triu_size(dim),), CROSS: (dim, num_classes), COUNTS: (num_classes,)}
    arrays = {}
    for name, shape in want.items():
        if name not in record:
            raise ClientReplyError(f"analytic reply: array {name!r} missing from {STATS!r}")
        a = record[name].numpy()
        if a.shape != shape:
            raise ClientReplyError(f"analytic reply: {name!r} has shape {a.shape}, expected {shape} "
                                   f"(d_e={dim}, {num_classes} classes: same strategy.expansion_dim everywhere)")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ClientReplyError(f"analytic reply: {name!r} has non-finite entries")
        arrays[name] = a
    counts = np.round(arrays[COUNTS])
    if (counts < 0).any() or np.abs(arrays[COUNTS] - counts).max(initial=0.0) > count_tol:
        raise ClientReplyError(f"analytic reply: {COUNTS!r} must be non-negative integers (a sum of replies "
                               "under SecAgg+ is parsed after summing, not per reply)")
    return Statistics(unpack_gram(arrays[GRAM_TRIU], dim), torch.from_numpy(arrays[CROSS]),
                      torch.from_numpy(counts))
