"""The unlearning-method protocol and the ``none`` baseline (stop using the data, change nothing).

A method is server logic that talks to the clients only through :class:`Federation`
(implemented over Flower's Grid in ``strategies/unlearning.py``). Methods that need
only sums over clients (:meth:`Federation.sums`, :meth:`Federation.weighted_mean`)
can run under secure aggregation; a method that keeps individual client updates
declares ``needs_individual_updates = True`` and is rejected there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from fedcl.unlearning.data import Samples, encode_samples, merge_samples
from fedcl.unlearning.requests import Request

State = dict[str, torch.Tensor]


class Federation(Protocol):
    """What an unlearning method may ask of the clients (one communication round per call)."""

    def sums(
        self, action: str, clients: list[int], state: State, options: dict[str, Any]
    ) -> tuple[dict[str, State], dict[str, float]]:
        """Per reply record, the sum over clients of its arrays; and the summed metrics."""
        ...

    def weighted_mean(
        self, action: str, clients: list[int], state: State, options: dict[str, Any]
    ) -> tuple[State | None, dict[str, float]]:
        """sum_i n_i W_i / sum_i n_i of the returned weights (None when sum n_i = 0); summed metrics."""
        ...

    def individual(
        self, action: str, clients: list[int], state: State, options: dict[str, Any]
    ) -> dict[int, tuple[State, int]]:
        """Each client's returned weights and sample count (not possible under secure aggregation)."""
        ...


@dataclass
class UnlearnJob:
    """The deletion requests served at one round and the data they concern.

    Parameters
    ----------
    requests : list[Request]
        Served now.
    server_round : int
        The round after whose aggregation they are served.
    seen_tasks : list[int]
        Tasks trained so far (the forget and retain data live in them).
    current_task : int
        The task being trained now (repair rounds train it).
    retain_clients : list[int]
        Clients still in the federation after this job.
    forget_clients : list[int]
        Clients leaving now.
    forget_classes : list[int]
        Classes forgotten now.
    dropped_classes : list[int]
        Classes forgotten by earlier jobs (excluded from every data set).
    lr : float
        The run's local learning rate.
    task_of_round : dict[int, int]
        The global task of every round so far (FedEraser replays stored rounds).
    data_access : str
        ``history`` (clients hold every seen task's data) or ``buffer`` (only their
        current task's data and their replay buffer): ``unlearning.data_access``.
    local_epochs : int
        The run's local epochs per round (FedEraser's calibration is a fraction of it).
    forget_samples : Samples
        Samples forgotten now (sample-level requests), client -> task -> indices.
    dropped_samples : Samples
        Samples forgotten by earlier jobs.
    """

    requests: list[Request]
    server_round: int
    seen_tasks: list[int]
    current_task: int
    retain_clients: list[int]
    forget_clients: list[int]
    forget_classes: list[int]
    dropped_classes: list[int]
    lr: float
    task_of_round: dict[int, int] = field(default_factory=dict)
    data_access: str = "history"
    local_epochs: int = 1
    forget_samples: Samples = field(default_factory=dict)
    dropped_samples: Samples = field(default_factory=dict)

    @property
    def holders(self) -> list[int]:
        """Clients that may hold forget data: the leaving ones, the samples' owners, everyone for a class request."""
        if self.forget_classes:
            return sorted(set(self.retain_clients) | set(self.forget_clients))
        owners = {c for c, tasks in self.forget_samples.items() if any(tasks.values())}
        return sorted(set(self.forget_clients) | owners)

    def forget_options(self, action: str, **extra: Any) -> dict[str, Any]:
        """Query options over the forget / retain split of the data each client may use (``data_access``)."""
        return {"action": action, "tasks": list(self.seen_tasks), "access": self.data_access,
                "forget_clients": list(self.forget_clients), "forget_classes": list(self.forget_classes),
                "forget_samples": encode_samples(self.forget_samples), "drop_classes": list(self.dropped_classes),
                "drop_samples": encode_samples(self.dropped_samples), **extra}

    def retain_options(self, action: str, tasks: list[int] | None = None, **extra: Any) -> dict[str, Any]:
        """Query options over retain data only (everything forgotten so far is dropped).

        ``tasks``: the tasks whose data is used (default: every seen task), within the access rule.
        """
        return {"action": action, "tasks": list(self.seen_tasks if tasks is None else tasks),
                "access": self.data_access, "forget_clients": [], "forget_classes": [], "forget_samples": "",
                "drop_classes": sorted(set(self.dropped_classes) | set(self.forget_classes)),
                "drop_samples": encode_samples(merge_samples(self.dropped_samples, self.forget_samples)), **extra}


class Unlearner:
    """Base class and the ``none`` method: the data is dropped from then on, the model is left as it is.

    Class attributes
    ----------------
    needs_individual_updates : bool
        True when the method keeps or reads single clients' updates (rejected under
        ``privacy.secure_aggregation``).
    removes_from_start : bool
        True for the retrain oracle: the forgotten data is excluded from round 1.
    """

    name = "none"
    needs_individual_updates = False
    removes_from_start = False

    def observe_round(self, server_round: int, global_before: State, updates: dict[int, tuple[State, int]]) -> None:
        """See every round's individual client updates ``W_i - W`` (only when ``needs_individual_updates``)."""

    def unlearn(self, state: State, job: UnlearnJob, fed: Federation) -> tuple[State, int]:
        """Return the unlearned global weights and the communication rounds spent."""
        return state, 0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
