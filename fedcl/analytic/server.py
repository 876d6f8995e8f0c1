"""The server's analytic state: the running sums, the ledger of what they hold, and the solve.

The strategy (``strategies/analytic.py``) talks to the clients; this module only keeps
numbers: ``sums`` is the sum of every statistics reply accepted so far (minus every
forgotten one), ``ledger`` says which (client, task) shares it holds, so that a deletion
request asks exactly the data that was added and a client is never asked twice for the
same task. Everything is float64; the solve is :func:`~fedcl.analytic.ridge.solve_ridge`
(Cholesky), on the Gram projected onto the positive semi-definite cone when DP noise or
SecAgg+ quantisation perturbed it (post-processing: it keeps the DP guarantee).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from fedcl.analytic.ridge import Statistics, solve_ridge


def project_psd(gram: torch.Tensor) -> torch.Tensor:
    """The nearest symmetric positive semi-definite matrix (Frobenius): negative eigenvalues set to 0."""
    vals, vecs = torch.linalg.eigh(0.5 * (gram + gram.T))
    return (vecs * vals.clamp_min(0.0)) @ vecs.T


class AnalyticState:
    """Running sums of the clients' statistics and the (client -> tasks) ledger behind them.

    Parameters
    ----------
    dim : int
        ``d_e`` (``strategy.expansion_dim``).
    num_classes : int
        The stream's classes.
    gamma : float
        ``strategy.gamma``.
    perturbed : bool
        True when noise (DP) or quantisation (SecAgg+) enters the sums: the Gram is
        projected onto the PSD cone before the solve.
    """

    def __init__(self, dim: int, num_classes: int, gamma: float, perturbed: bool) -> None:
        self.dim, self.num_classes, self.gamma, self.perturbed = dim, num_classes, gamma, perturbed
        self.sums = Statistics.zeros(dim, num_classes)
        self.ledger: dict[int, list[int]] = {}
        self.forgotten_clients: list[int] = []
        self.dropped_classes: list[int] = []
        self.statistics_rounds = 0

    def pending(self, client: int, tasks: Iterable[int]) -> list[int]:
        """The tasks of ``tasks`` whose statistics ``client`` has not contributed yet."""
        if client in self.forgotten_clients:
            return []
        done = set(self.ledger.get(client, []))
        return sorted({int(t) for t in tasks} - done)

    def add(self, stats: Statistics, shares: dict[int, list[int]]) -> None:
        """Add a round's summed statistics, which cover the (client -> tasks) ``shares``."""
        self.sums = self.sums + stats
        for c, tasks in shares.items():
            self.ledger[c] = sorted(set(self.ledger.get(c, [])) | set(tasks))
        self.statistics_rounds += 1

    def forget(self, stats: Statistics, clients: Iterable[int], classes: Iterable[int]) -> None:
        """Subtract the statistics of a served request (``clients`` leave the ledger, ``classes`` are dropped)."""
        self.sums = self.sums - stats
        for c in clients:
            self.ledger.pop(int(c), None)
            self.forgotten_clients = sorted(set(self.forgotten_clients) | {int(c)})
        self.dropped_classes = sorted(set(self.dropped_classes) | {int(k) for k in classes})

    def system(self) -> Statistics:
        """The sums the solve uses (the Gram projected onto the PSD cone when perturbed)."""
        if not self.perturbed:
            return self.sums
        return Statistics(project_psd(self.sums.gram), self.sums.cross, self.sums.class_counts)

    def solve(self) -> torch.Tensor:
        """``W = (G + gamma I)^-1 C`` ``[d_e, C]`` (Cholesky, float64)."""
        return solve_ridge(self.system(), self.gamma)

    def samples(self) -> int:
        """Samples in the sums (0 under DP: counts are not released)."""
        return self.sums.count

    def state_dict(self) -> dict[str, Any]:
        """Sums, ledger and the served requests (checkpoints)."""
        return {"sums": self.sums.state_dict(), "ledger": {str(c): list(t) for c, t in self.ledger.items()},
                "forgotten_clients": list(self.forgotten_clients), "dropped_classes": list(self.dropped_classes),
                "statistics_rounds": self.statistics_rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.sums = Statistics.from_state_dict(state["sums"])
        self.ledger = {int(c): [int(t) for t in ts] for c, ts in state["ledger"].items()}
        self.forgotten_clients = [int(c) for c in state["forgotten_clients"]]
        self.dropped_classes = [int(k) for k in state["dropped_classes"]]
        self.statistics_rounds = int(state["statistics_rounds"])
