"""Privacy accounting over the whole continual stream (all rounds of all tasks)."""

from __future__ import annotations

import math
from typing import Any

from fedcl.errors import ConfigError


def local_noise_multiplier(epsilon: float, delta: float) -> float:
    """Noise std / sensitivity of Flower's ``LocalDpMod`` (the classic Gaussian mechanism).

    Dwork & Roth, "The Algorithmic Foundations of Differential Privacy", 2014, Thm. A.1:
    sigma = Delta * sqrt(2 ln(1.25/delta)) / epsilon.
    """
    return math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


class StreamAccountant:
    """Flower's RDP accountant composed once per private release, across tasks.

    Mironov, "Renyi Differential Privacy", CSF 2017; Mironov, Talwar & Zhang,
    "Renyi Differential Privacy of the Sampled Gaussian Mechanism", 2019. Each
    round that releases a (noised) aggregate composes one Gaussian event with the
    round's effective noise multiplier; nothing resets at a task boundary, so the
    epsilon reported after round r bounds the privacy loss of everything released
    up to r. Under local DP each client releases its own noised update every round
    it trains; composing once per round bounds every client's loss (a client
    trains at most once per round).

    Parameters
    ----------
    delta : float
        The delta at which epsilon is reported.
    population_size : int
        Logical clients (the population the round's sample is drawn from).
    sampling : str, default "no_amplification"
        ``no_amplification`` (valid for any client selection, no subsampling credit)
        or ``without_replacement`` (uniform sampling of ``clients_per_round`` of all clients).
    max_epsilon : float | None, default None
        :meth:`check` raises before a release that would exceed it.
    """

    def __init__(
        self, *, delta: float, population_size: int, sampling: str = "no_amplification",
        max_epsilon: float | None = None,
    ) -> None:
        from flwr.serverapp import NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod

        if sampling == "without_replacement":
            method, relation = SamplingMethod.WITHOUT_REPLACEMENT, NeighboringRelation.REPLACE_ONE
        else:
            method, relation = SamplingMethod.NO_AMPLIFICATION, NeighboringRelation.ADD_OR_REMOVE_ONE
        config = PrivacyConfig(
            target_delta=delta, population_size=population_size, neighboring_relation=relation,
            sampling_method=method, max_epsilon=max_epsilon,
        )
        try:
            self._acc = RdpAccountant(config)
        except ImportError as exc:
            raise ConfigError("privacy.dp", "accountant", "needs dp-accounting: pip install 'fedcl[privacy]'") from exc
        self.delta = delta
        self.population_size = population_size
        self.max_epsilon = max_epsilon
        self.epsilon = 0.0
        self.releases = 0

    def _event(self, noise_multiplier: float, sample_size: int) -> Any:
        from flwr.serverapp import GaussianPrivacyEvent

        return GaussianPrivacyEvent(noise_multiplier=float(noise_multiplier), sample_size=int(sample_size),
                                    population_size=self.population_size)

    def check(self, noise_multiplier: float, sample_size: int) -> None:
        """Raise Flower's ``PrivacyBudgetExhausted`` if this release would exceed ``max_epsilon``."""
        if self.max_epsilon is None:
            return
        from flwr.serverapp.exception import PrivacyBudgetExhausted

        if self._acc.would_exceed(self._event(noise_multiplier, sample_size)):
            raise PrivacyBudgetExhausted(
                f"the next round would exceed privacy.dp.max_epsilon={self.max_epsilon} (spent: epsilon="
                f"{self.epsilon:.4f} at delta={self.delta}); stop here or raise the budget"
            )

    def compose(self, noise_multiplier: float, sample_size: int) -> float:
        """Compose one release; return the cumulative epsilon at ``delta``."""
        self._acc.compose(self._event(noise_multiplier, sample_size))
        self.releases += 1
        self.epsilon = float(self._acc.get_epsilon(self.delta))
        return self.epsilon

    def state_dict(self) -> dict[str, Any]:
        """Flower's JSON-friendly accountant ledger plus the last epsilon."""
        return {"ledger": self._acc.state_dict(), "epsilon": self.epsilon, "releases": self.releases}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a resumed run keeps spending the same budget)."""
        self._acc.load_state_dict(state["ledger"])
        self.epsilon = float(state.get("epsilon", 0.0))
        self.releases = int(state.get("releases", 0))
