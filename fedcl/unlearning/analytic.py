"""Exact unlearning of the analytic head in one round (``unlearning=analytic``, with ``strategy=analytic``)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from fedcl.analytic.ridge import Statistics, ridge_inverse, solve_ridge, woodbury_forget
from fedcl.analytic.server import AnalyticState
from fedcl.errors import ConfigError
from fedcl.unlearning.base import Federation, State, Unlearner, UnlearnJob

FORMS = ("downdate", "woodbury")


@runtime_checkable
class AnalyticServer(Protocol):
    """What the unlearner needs of ``strategies/analytic.py``'s strategy (the server's sums and the clients)."""

    analytic: AnalyticState
    secure: bool

    def forget_statistics(self, server_round: int, clients: list[int], classes: list[int]) -> Statistics:
        """One round: the summed statistics of the data to forget, from every holder."""
        ...

    def install(self, weight: torch.Tensor) -> State:
        """Adopt the new solution; the global model's new state."""
        ...

    def backbone_report(self, clients: list[int], classes: list[int]) -> dict[str, Any]:
        """Whether the forgotten data trained the frozen backbone, and why."""
        ...


def server_of(fed: Federation) -> AnalyticServer:
    """The analytic strategy behind the unlearning runner (the config allows this method with it only)."""
    strategy = getattr(fed, "strategy", None)
    if not isinstance(strategy, AnalyticServer):
        raise ConfigError("unlearning.name", "analytic", "only with strategy=analytic (it downdates that strategy's "
                          "sums of client statistics)")
    return strategy


class AnalyticUnlearner(Unlearner):
    """Exact, one-round unlearning of the analytic classifier: a downdate of the sums of statistics.

    Tang et al., "ACU: Analytic Continual Unlearning for Efficient and Exact Forgetting
    with Privacy Preservation", arXiv:2505.12239, 2025. The holders of the data to forget
    (a leaving client: all it contributed; a class: every contributor's samples of it) send
    its statistics in one round, through SecAgg+ when on; the server subtracts them from its
    sums and solves again (``downdate``), or updates the solved inverse by Woodbury's identity
    as ACU does (``woodbury``). The head then equals the analytic learner retrained without
    that data on the same frozen backbone, to float64 rounding. The model is exact only if
    the forgotten data never trained the backbone: every served request records
    ``head_exact``, ``backbone_saw_forgotten_data`` (``true``, ``false`` or ``"unknown"`` for a
    loaded backbone), ``exact`` and the reason, in the ``unlearning`` section of summary.json.

    Parameters
    ----------
    form : str, default "downdate"
        ``downdate`` (subtract, Cholesky solve) or ``woodbury`` (ACU's update of ``R = (G + gamma I)^-1``).
    """

    name = "analytic"

    def __init__(self, form: str = "downdate") -> None:
        if form not in FORMS:
            raise ConfigError("unlearning.form", form, f"one of {list(FORMS)}")
        self.form = form
        self.records: list[dict[str, Any]] = []

    def unlearn(self, state: State, job: UnlearnJob, fed: Federation) -> tuple[State, int]:
        server = server_of(fed)
        clients, classes = list(job.forget_clients), list(job.forget_classes)
        forget = server.forget_statistics(job.server_round, clients, classes)
        sums = server.analytic
        if self.form == "woodbury":
            system = sums.system()
            inverse = ridge_inverse(system, sums.gamma)
            _, weight = woodbury_forget(inverse, solve_ridge(system, sums.gamma), forget, sums.gamma)
            sums.forget(forget, clients, classes)
        else:
            sums.forget(forget, clients, classes)
            weight = sums.solve()
        self.records.append(self._record(job, forget, server))
        return server.install(weight), 1

    def _record(self, job: UnlearnJob, forget: Statistics, server: AnalyticServer) -> dict[str, Any]:
        """What is exact about this request, and why (never claimed without reason)."""
        perturbed = server.analytic.perturbed
        report = server.backbone_report(list(job.forget_clients), list(job.forget_classes))
        reasons = [report["reason"]]
        if perturbed:
            reasons.append("the sums carry DP noise or SecAgg+ quantisation: the head equals the retrain oracle only "
                           "up to that perturbation")
        return {"round": job.server_round, "clients": list(job.forget_clients), "classes": list(job.forget_classes),
                "form": self.form, "samples_forgotten": forget.count, "head_exact": not perturbed,
                "backbone_saw_forgotten_data": report["backbone_saw_forgotten_data"],
                "exact": (not perturbed) and report["backbone_saw_forgotten_data"] is False,
                "reason": "; ".join(reasons)}

    def state_dict(self) -> dict[str, Any]:
        return {"analytic": list(self.records)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.records = list(state["analytic"])
