"""Gradient ascent on the forget data by its holders, then repair rounds on retain data."""

from __future__ import annotations

from fedcl.errors import ConfigError
from fedcl.unlearning.base import Federation, State, Unlearner, UnlearnJob


class GradientAscent(Unlearner):
    """The common federated-unlearning baseline: ascend the loss of the forget data, then repair.

    Halimi et al., "Federated Unlearning: How to Efficiently Erase a Client in FL?"
    (2022) let the leaving client maximise its loss (bounded, here by stopping once a
    batch loss exceeds ``max_loss``); for a class request every client ascends on its
    samples of the class. The server averages the ascended models weighted by the
    forget counts (a weighted mean: a sum, so secure aggregation applies), then runs
    ``repair_rounds`` FedAvg rounds of plain SGD on the remaining clients' retain data.

    Parameters
    ----------
    ascent_epochs : float, default 1.0
        Passes over the forget data (fractions allowed).
    ascent_lr : float | None, default None
        Ascent learning rate (None: ``train.lr``).
    max_loss : float | None, default 3.0
        Stop ascending once a batch loss exceeds this (None: no bound).
    repair_rounds : int, default 2
        FedAvg rounds on retain data after the ascent.
    repair_epochs : float, default 1.0
        Local passes per repair round.
    max_samples : int | None, default None
        Per client and task, samples used (None: all).

    Data access: the ascent runs on the forget data each holder may use and the repair on
    the retain data each remaining client may use, under ``unlearning.data_access``
    (``history``: every seen task; ``buffer``: the current task and the replay buffer).
    """

    name = "ga"

    def __init__(self, ascent_epochs: float = 1.0, ascent_lr: float | None = None, max_loss: float | None = 3.0,
                 repair_rounds: int = 2, repair_epochs: float = 1.0, max_samples: int | None = None) -> None:
        if not ascent_epochs > 0:
            raise ConfigError("unlearning.ascent_epochs", ascent_epochs, "a number > 0")
        if not (isinstance(repair_rounds, int) and repair_rounds >= 0):
            raise ConfigError("unlearning.repair_rounds", repair_rounds, "an integer >= 0")
        self.ascent_epochs, self.ascent_lr, self.max_loss = float(ascent_epochs), ascent_lr, max_loss
        self.repair_rounds, self.repair_epochs = repair_rounds, float(repair_epochs)
        self.max_samples = max_samples

    def unlearn(self, state: State, job: UnlearnJob, fed: Federation) -> tuple[State, int]:
        lr = float(self.ascent_lr if self.ascent_lr is not None else job.lr)
        opts = job.forget_options("ascent", epochs=self.ascent_epochs, lr=lr, max_loss=self.max_loss,
                                  max_samples=self.max_samples)
        ascended, _ = fed.weighted_mean("ascent", job.holders, state, opts)
        new = ascended if ascended is not None else state
        for i in range(self.repair_rounds):
            ropts = job.retain_options("train", epochs=self.repair_epochs, lr=job.lr, salt=i + 1,
                                       max_samples=self.max_samples)
            repaired, _ = fed.weighted_mean("train", job.retain_clients, new, ropts)
            if repaired is not None:
                new = repaired
        return new, 1 + self.repair_rounds
