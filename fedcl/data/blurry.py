"""Stochastic blurry task boundaries (Si-Blurry) over a class-incremental stream.

Moon et al., "Online Class Incremental Learning on Stochastic Blurry Task Boundary
via Mask and Visual Prompt Tuning", ICCV 2023. The classes are split into
*disjoint* classes (a share ``disjoint_ratio`` of them; their samples appear in
their home task only) and *blurry* classes (part of their samples leak into the
other tasks). With ``vary_classes`` the number of classes per task is random (cut
points of the class order drawn uniformly, every task keeps >= 1 class). Each
client ``c`` draws its own blurry proportion ``m_c ~ U(0, 2*blurry_ratio)`` (clipped
to [0, 1]) when ``per_client`` (else ``m_c = blurry_ratio``): of its samples of
each blurry class, ``round(m_c * n)`` move from the home task to other tasks,
each to one drawn uniformly. A task's test split stays its home classes, so the
accuracy matrix keeps its meaning. Everything is seeded by the run seed.

Config (``stream.blurry``; null = off)::

    blurry: {disjoint_ratio: 0.5, blurry_ratio: 0.1, per_client: true, vary_classes: true}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcl.errors import ConfigError
from fedcl.seeding import TAG_BLURRY, numpy_rng

KEYS = ("disjoint_ratio", "blurry_ratio", "per_client", "vary_classes")


def check_blurry(spec: Any, scenario: str) -> dict[str, Any]:
    """The validated ``stream.blurry`` mapping (defaults filled in)."""
    if not isinstance(spec, dict) or set(spec) - set(KEYS):
        raise ConfigError("stream.blurry", spec, f"null or a mapping with keys {list(KEYS)}")
    if scenario != "class_incremental":
        raise ConfigError("stream.blurry", spec, "stream.scenario=class_incremental (blurry tasks mix classes; a "
                          "task-incremental head or a permuted domain has no meaning for a leaked sample)")
    out = {"disjoint_ratio": 0.5, "blurry_ratio": 0.1, "per_client": True, "vary_classes": True, **spec}
    for k in ("disjoint_ratio", "blurry_ratio"):
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ConfigError(f"stream.blurry.{k}", v, "a number in [0, 1]")
    return out


def _rng(seed: int, *parts: int) -> np.random.Generator:
    return numpy_rng(seed, TAG_BLURRY, *parts)


def blurry_classes(order: list[int], num_tasks: int, spec: dict[str, Any], seed: int
                   ) -> tuple[list[list[int]], list[int]]:
    """Home classes of every task (random sizes with ``vary_classes``) and the list of blurry classes."""
    C = len(order)
    if spec["vary_classes"] and num_tasks > 1:
        cuts = np.sort(_rng(seed, 0).choice(np.arange(1, C), size=num_tasks - 1, replace=False))
    else:
        cuts = np.cumsum([len(a) for a in np.array_split(np.arange(C), num_tasks)])[:-1]
    homes = [[int(c) for c in chunk] for chunk in np.split(np.asarray(order), cuts)]
    n_disjoint = int(round(spec["disjoint_ratio"] * C))
    disjoint = set(int(c) for c in _rng(seed, 1).choice(order, size=n_disjoint, replace=False))
    return homes, sorted(c for c in order if c not in disjoint)


def client_proportions(num_clients: int, spec: dict[str, Any], seed: int) -> np.ndarray:
    """Each client's share ``m_c`` of blurry-class samples that leave their home task."""
    m = float(spec["blurry_ratio"])
    if not spec["per_client"]:
        return np.full(num_clients, m)
    return np.clip(_rng(seed, 2).uniform(0.0, 2.0 * m, size=num_clients), 0.0, 1.0)


def blur_parts(parts: list[list[np.ndarray]], labels: np.ndarray, blurry: list[int], props: np.ndarray,
               seed: int) -> list[list[np.ndarray]]:
    """Move ``round(m_c * n)`` of each client's samples of every blurry class to uniformly drawn other tasks.

    Parameters
    ----------
    parts : list[list[np.ndarray]]
        Per task, per client, indices into the base train arrays (home tasks).
    labels : np.ndarray
        Base train labels.
    blurry : list[int]
        The blurry classes.
    props : np.ndarray
        Per client, the share of blurry samples that move.
    seed : int
        Run seed.

    Returns
    -------
    list[list[np.ndarray]]
        The new per-task, per-client sorted indices (the same samples overall).
    """
    num_tasks, num_clients = len(parts), len(parts[0])
    if num_tasks < 2:
        return parts
    out: list[list[list[np.ndarray]]] = [[[p] for p in row] for row in parts]
    blurry_set = np.asarray(blurry, dtype=np.int64)
    for t in range(num_tasks):
        others = np.asarray([u for u in range(num_tasks) if u != t])
        for c in range(num_clients):
            idx = parts[t][c]
            rng = _rng(seed, 3, t, c)
            move_all = []
            for k in np.intersect1d(np.unique(labels[idx]), blurry_set):
                of_k = idx[labels[idx] == k]
                n = int(round(props[c] * len(of_k)))
                if n:
                    move_all.append(rng.choice(of_k, size=n, replace=False))
            if not move_all:
                continue
            move = np.concatenate(move_all)
            out[t][c][0] = np.setdiff1d(idx, move)
            dest = others[rng.integers(len(others), size=len(move))]
            for u in np.unique(dest):
                out[u][c].append(move[dest == u])
    return [[np.sort(np.concatenate(chunks)).astype(np.int64) for chunks in row] for row in out]
