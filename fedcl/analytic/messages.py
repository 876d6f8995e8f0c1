"""The analytic statistics' message contract: record keys, builder and parser (client and server halves).

A statistics reply is one ArrayRecord :data:`STATS` of three float64 arrays: the Gram's upper
triangle (diagonal included) flattened row by row, ``X^T Y`` and the class counts. Sending the
triangle halves the bytes of ``d_e x d_e``; a sum of triangles is the triangle of the sum, so
SecAgg+ and the server's sums work on it unchanged. The wiring is in ``docs/analytic.md``.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from fedcl.analytic.ridge import Statistics
from fedcl.errors import ClientReplyError

ANALYTIC = "analytic"  # query action: message type "query.analytic"
STATS = "analytic-stats"  # client -> server ArrayRecord
GRAM_TRIU = "gram-triu"  # float64 [d (d + 1) / 2]
CROSS = "cross"  # float64 [d, C]
COUNTS = "class-counts"  # float64 [C]
# server -> client ConfigRecord keys
PURPOSE = "analytic-purpose"  # "learn" (the task's data) | "forget" (data of a deletion request)
PURPOSES = ("learn", "forget")
TASKS = "analytic-tasks"  # list[int]: the tasks whose data the statistics cover
FORGET_CLASSES = "analytic-forget-classes"  # list[int]: "forget" of a class request: only these labels
# Counts may come back as near-integers from SecAgg+'s quantisation (error ~ 2 n / 2^22 per client)
COUNT_TOL = 1e-3


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


def parse_stats(record: object, dim: int, num_classes: int) -> Statistics:
    """The server half: check a reply's :data:`STATS` record and return its :class:`Statistics`.

    Raises
    ------
    ClientReplyError
        Not an ArrayRecord, an array missing or of the wrong size (another
        ``strategy.expansion_dim`` or class count), non-finite entries, or counts that are
        not non-negative integers.
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
    if (counts < 0).any() or np.abs(arrays[COUNTS] - counts).max(initial=0.0) > COUNT_TOL:
        raise ClientReplyError(f"analytic reply: {COUNTS!r} must be non-negative integers (a sum of replies "
                               "under SecAgg+ is parsed after summing, not per reply)")
    return Statistics(unpack_gram(arrays[GRAM_TRIU], dim), torch.from_numpy(arrays[CROSS]),
                      torch.from_numpy(counts))
