"""Fault injection in the ClientApp (``faults=`` config group), deterministic by seed.

Every (run seed, round, logical client, attempt) draws its own uniform numbers
from :func:`~fedcl.seeding.derive_seed`, so a rerun with the same seed fails the
same clients in the same rounds, whatever the order the clients run in, while a
retried round (``attempt`` > 0) draws anew, like a transient real fault. The
kinds mirror what the server must survive (README "Faults"):

* ``crash_prob``: the client raises :class:`InjectedCrash` before training; Flower
  turns the exception into an error reply;
* ``nan_prob``: the client trains, then returns all-NaN weights; the server's
  reply validation must reject them;
* ``delay_prob`` / ``delay_s``: the client sleeps before training; with
  ``federation.round_timeout_s`` below the delay its reply comes too late.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

import fedcl.keys as keys
from fedcl.config.schema import Faults
from fedcl.errors import FedCLError
from fedcl.seeding import derive_seed


class InjectedCrash(FedCLError, RuntimeError):
    """The crash a ``faults`` config asked for (not a bug)."""


@dataclass(frozen=True)
class FaultPlan:
    """What one client does wrong in one round.

    Attributes
    ----------
    crash : bool
        Raise instead of training.
    nan : bool
        Return NaN weights.
    delay_s : float
        Seconds to sleep before training.
    """

    crash: bool = False
    nan: bool = False
    delay_s: float = 0.0

    @classmethod
    def draw(cls, faults: Faults, seed: int, server_round: int, client_id: int, attempt: int = 0) -> FaultPlan:
        """The plan of (``seed``, ``server_round``, ``client_id``, ``attempt``) under the ``faults`` config."""
        u = np.random.default_rng(derive_seed(seed, "faults", server_round, client_id, attempt)).random(3)
        return cls(
            crash=bool(u[0] < faults.crash_prob),
            nan=bool(u[1] < faults.nan_prob),
            delay_s=faults.delay_s if u[2] < faults.delay_prob else 0.0,
        )

    def before_train(self, client_id: int, server_round: int) -> None:
        """Sleep and/or crash as planned."""
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        if self.crash:
            raise InjectedCrash(f"injected crash of client {client_id} in round {server_round} (faults.crash_prob)")

    def after_train(self, content: RecordDict) -> RecordDict:
        """``content`` with NaN weights when planned (shapes and dtypes kept, so only the values are wrong)."""
        if not self.nan:
            return content
        arrays = content[keys.ARRAYS]
        assert isinstance(arrays, ArrayRecord)
        poisoned = {}
        for k, a in arrays.items():
            x = a.numpy()
            poisoned[k] = Array(np.full_like(x, np.nan) if np.issubdtype(x.dtype, np.inexact) else x)
        content[keys.ARRAYS] = ArrayRecord(poisoned)
        return content
