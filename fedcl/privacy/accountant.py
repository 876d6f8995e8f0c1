"""Privacy accounting over the whole continual stream: every noised release of the run, one ledger.

Public API (what another release, e.g. analytic aggregation's noised sums, composes into):

* :class:`Release` names one Gaussian release: its noise multiplier (noise std divided by the
  release's L2 sensitivity under *adding or removing one client*), how many clients it sampled
  and from how many it sampled them, and a ``kind`` for the ledger (``train``, ``gpse``, ...);
* :meth:`StreamAccountant.check` raises before a release that would exceed ``max_epsilon``;
* :meth:`StreamAccountant.compose` adds it and returns the run's epsilon at ``delta``.

A caller never adjusts the multiplier for the neighbouring relation: under
``sampling=without_replacement`` (replace-one neighbours, the only relation sampling without
replacement is analysed for) the accountant doubles the sensitivity itself.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from flwr.serverapp.exception import PrivacyBudgetExhausted as _FlowerBudgetExhausted

from fedcl.errors import ConfigError


def local_noise_multiplier(epsilon: float, delta: float) -> float:
    """Noise std / sensitivity of Flower's ``LocalDpMod`` (the classic Gaussian mechanism).

    Dwork & Roth, "The Algorithmic Foundations of Differential Privacy", 2014, Thm. A.1:
    sigma = Delta * sqrt(2 ln(1.25/delta)) / epsilon.
    """
    return math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


class PrivacyBudgetExhausted(_FlowerBudgetExhausted):
    """The next release would take the run's epsilon above ``privacy.dp.max_epsilon`` (Flower's exception)."""


@dataclass(frozen=True)
class Release:
    """One Gaussian release of the run.

    Parameters
    ----------
    noise_multiplier : float
        Noise std / the release's L2 sensitivity when one client is added or removed (for a sum
        of updates clipped to C with N(0, (z C)^2) noise: z). Replace-one is the accountant's job.
    sample_size : int
        Clients the release was computed from (those sampled).
    population_size : int
        Clients it could have sampled them from this time (the eligible ones); equal to
        ``sample_size`` when everyone eligible takes part (no amplification).
    kind : str, default "train"
        What was released (the ledger counts releases by kind).
    """

    noise_multiplier: float
    sample_size: int
    population_size: int
    kind: str = "train"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(f"a release needs a finite noise multiplier > 0, got {self.noise_multiplier}")
        if not 1 <= self.sample_size <= self.population_size:
            raise ValueError(f"a release samples 1..population clients, got {self.sample_size} of "
                             f"{self.population_size}")


class StreamAccountant:
    """The RDP accountant of ``dp-accounting`` (the one Flower wraps), composed once per release, across tasks.

    Mironov, "Renyi Differential Privacy", CSF 2017; Mironov, Talwar & Zhang, "Renyi
    Differential Privacy of the Sampled Gaussian Mechanism", 2019; Wang, Balle &
    Kasiviswanathan, "Subsampled Renyi Differential Privacy", AISTATS 2019 (sampling
    without replacement, replace-one). Nothing resets at a task boundary, so the epsilon
    after round r bounds the privacy loss of everything released up to r. Flower's own
    ``RdpAccountant`` fixes one population for the whole run; here every release carries the
    population it was drawn from (clients leave after unlearning requests, schedules make
    clients inactive), which is what subsampling amplification depends on.

    Parameters
    ----------
    delta : float
        The delta at which epsilon is reported.
    sampling : str, default "no_amplification"
        ``no_amplification`` (add/remove-one neighbours, valid for any client selection, no
        subsampling credit) or ``without_replacement`` (replace-one neighbours, uniform sampling
        of each release's clients from its population: the sensitivity is twice the add/remove one).
    max_epsilon : float | None, default None
        :meth:`check` raises :class:`PrivacyBudgetExhausted` before a release that would exceed it.
    """

    def __init__(self, *, delta: float, sampling: str = "no_amplification", max_epsilon: float | None = None) -> None:
        if sampling not in ("no_amplification", "without_replacement"):
            raise ConfigError("privacy.dp.sampling", sampling, "one of ['no_amplification', 'without_replacement']")
        self.delta = delta
        self.sampling = sampling
        self.max_epsilon = max_epsilon
        self.ledger: list[Release] = []
        self.epsilon = 0.0
        self._acc = self._backend()

    @property
    def releases(self) -> int:
        """Releases composed so far."""
        return len(self.ledger)

    def releases_by_kind(self) -> dict[str, int]:
        """Releases composed so far, by kind."""
        return dict(Counter(r.kind for r in self.ledger))

    def _backend(self) -> Any:
        try:
            from dp_accounting.privacy_accountant import NeighboringRelation
            from dp_accounting.rdp import RdpAccountant
        except ImportError as exc:
            raise ConfigError("privacy.dp", "accountant", "needs dp-accounting: pip install 'fedcl[privacy]'") from exc
        relation = (NeighboringRelation.REPLACE_ONE if self.sampling == "without_replacement"
                    else NeighboringRelation.ADD_OR_REMOVE_ONE)
        return RdpAccountant(neighboring_relation=relation)

    def _event(self, release: Release) -> Any:
        from dp_accounting import dp_event

        if self.sampling == "no_amplification":
            return dp_event.GaussianDpEvent(release.noise_multiplier)
        # replace-one: one client's clipped contribution swapped for another's moves the sum by up to 2x
        gaussian = dp_event.GaussianDpEvent(release.noise_multiplier / 2.0)
        return dp_event.SampledWithoutReplacementDpEvent(release.population_size, release.sample_size, gaussian)

    def epsilon_after(self, release: Release) -> float:
        """The run's epsilon if ``release`` were composed now (nothing is composed)."""
        acc = self._backend()
        for r in [*self.ledger, release]:
            acc.compose(self._event(r))
        return float(acc.get_epsilon(self.delta))

    def check(self, release: Release) -> None:
        """Raise :class:`PrivacyBudgetExhausted` if ``release`` would take epsilon above ``max_epsilon``."""
        if self.max_epsilon is None:
            return
        after = self.epsilon_after(release)
        if after > self.max_epsilon:
            raise PrivacyBudgetExhausted(
                f"the next {release.kind} release (noise multiplier {release.noise_multiplier:.4g}, "
                f"{release.sample_size} of {release.population_size} clients) would take epsilon to {after:.4f} > "
                f"privacy.dp.max_epsilon={self.max_epsilon} (spent: {self.epsilon:.4f} at delta={self.delta}); "
                "the run stops here: raise the budget or the noise"
            )

    def compose(self, release: Release, count: int = 1) -> float:
        """Compose ``release`` (``count`` times in a row); return the run's epsilon at ``delta``."""
        if count < 1:
            raise ValueError(f"a release is composed at least once, got count={count}")
        self._acc.compose(self._event(release), count)
        self.ledger.extend([release] * count)
        self.epsilon = float(self._acc.get_epsilon(self.delta))
        return self.epsilon

    def state_dict(self) -> dict[str, Any]:
        """The ledger (JSON-friendly) and the last epsilon."""
        return {"sampling": self.sampling, "delta": self.delta, "ledger": [asdict(r) for r in self.ledger],
                "epsilon": self.epsilon, "releases": self.releases}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a resumed run keeps spending the same budget)."""
        if state.get("sampling") != self.sampling or state.get("delta") != self.delta:
            raise ConfigError("privacy.dp", {"sampling": self.sampling, "delta": self.delta},
                              f"the checkpoint's accountant used {state.get('sampling')}/delta={state.get('delta')}: "
                              "resume with the privacy config that wrote it")
        self.ledger, self._acc = [], self._backend()
        for r in state["ledger"]:
            self.compose(Release(**r))
