"""Client-level differential privacy for the continual strategies: the averaging step and its accountant.

Central DP follows McMahan et al., "Learning Differentially Private Recurrent Language
Models", ICLR 2018 (clip each client's update to norm C, add N(0, (z C / m)^2) to the
mean of m updates), through Flower's strategy wrappers
(``DifferentialPrivacy{Client,Server}Side{Fixed,Adaptive}Clipping``; adaptive clipping:
Andrew et al., "Differentially Private Learning with Adaptive Clipping", NeurIPS 2021).
Local DP is Flower's ``LocalDpMod`` on the clients (``fedcl/privacy/client_mod.py``); the
server only accounts for it. :class:`PrivateAveraging` replaces FedAvg's averaging step
of any strategy built on :class:`~strategies.fedavg.FCLFedAvg` (its post-processing,
FOT's projection, runs after the noise: post-processing keeps the guarantee) and is a
round hook that reports epsilon every round.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

import fedcl.keys as keys
from fedcl.config.schema import DP
from fedcl.errors import ConfigError
from fedcl.hooks import RoundHook
from fedcl.privacy.accountant import Release, StreamAccountant, local_noise_multiplier
from fedcl.privacy.gpse import GpseSums, add_gpse_noise
from fedcl.seeding import derive_seed, seeded_numpy
from strategies.aggregation import fedavg


class _MeanOf(Strategy):
    """What Flower's DP wrappers wrap: the round's prepared messages, and the plain mean with equal weights.

    The sensitivity C/m of the mean holds for equal weights only (McMahan et al. 2018).
    """

    def __init__(self, weighted_by_key: str) -> None:
        self.weighted_by_key = weighted_by_key
        self.pending: list[Message] = []

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.pending

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if not replies:
            return None, None
        for r in replies:
            r.content[keys.METRICS][keys.NUM_EXAMPLES] = 1  # type: ignore[index,assignment]
        return fedavg([r.content for r in replies], self.weighted_by_key)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        return None


class PrivateAveraging(RoundHook):
    """Clip, average and noise the round's updates (central DP) or only average them (local DP); account epsilon.

    Every release of the run goes into one :class:`~fedcl.privacy.accountant.StreamAccountant`
    (over every task, so ``epsilon`` in ``metrics.jsonl`` is the loss of the whole stream so far):
    each round's noised aggregate (central) or the clients' noised updates (local, one release per
    try of a round: a retried round releases twice), and under FOT each task's noised GPSE sums
    (:meth:`release_gpse`). Central DP's noise is calibrated to the replies that arrived (std z C on
    their sum whatever dropped out), so every round's effective multiplier is the configured z.

    Parameters
    ----------
    dp : DP
        ``privacy.dp``.
    seed : int
        Run seed (the noise of round r is seeded by (seed, r)).
    num_clients : int
        Logical clients (the population when the strategy does not say how many were eligible).
    per_round : int
        Clients sampled per round.
    weighted_by_key : str
        The sample-count metric of train replies.
    """

    name = "privacy"

    def __init__(self, dp: DP, seed: int, num_clients: int, per_round: int, weighted_by_key: str) -> None:
        self.dp, self.seed, self.num_clients = dp, seed, num_clients
        self.view = _MeanOf(weighted_by_key)
        self.wrapper: Strategy | None = None
        self.epsilon = 0.0
        self.last_noise_multiplier = 0.0
        self.last_noise_std = 0.0
        if dp.mode == "central":
            assert dp.noise_multiplier is not None
            self.noise_multiplier = dp.noise_multiplier
            self.wrapper = self._build_wrapper(per_round)
        else:
            assert dp.epsilon is not None
            self.noise_multiplier = local_noise_multiplier(dp.epsilon, dp.delta)
        self.accountant = StreamAccountant(delta=dp.delta, sampling=dp.sampling, max_epsilon=dp.max_epsilon)
        self._sampled: dict[int, tuple[int, int]] = {}  # round -> (clients sampled, eligible population)

    def _build_wrapper(self, m: int) -> Strategy:
        from flwr.serverapp import strategy as fs

        dp = self.dp
        side = "Client" if dp.clipping == "client" else "Server"
        try:
            if dp.adaptive:
                cls = _clip_norm_rises_when_clipping(getattr(fs, f"DifferentialPrivacy{side}SideAdaptiveClipping"))
                return cls(  # type: ignore[no-any-return]
                    self.view, self.noise_multiplier, m, initial_clipping_norm=dp.clipping_norm,
                    target_clipped_quantile=dp.target_clipped_quantile, clip_norm_lr=dp.clip_norm_lr,
                    clipped_count_stddev=dp.clipped_count_stddev,
                )
            cls = getattr(fs, f"DifferentialPrivacy{side}SideFixedClipping")
            return cls(self.view, self.noise_multiplier, dp.clipping_norm, m)  # type: ignore[no-any-return]
        except ValueError as exc:
            raise ConfigError("privacy.dp", dp.model_dump(), str(exc)) from exc

    # ---- the averaging step (strategies.fedavg.Averager) ------------------------------------
    def configure(
        self, server_round: int, arrays: ArrayRecord, messages: list[Message], population: int | None = None
    ) -> None:
        """Account a retried round's earlier try, refuse a diverging noise or an exhausted budget, add the norm.

        ``population``: the clients the round's sample was drawn from (the eligible ones).
        """
        if server_round in self._sampled and self.dp.mode == "local":
            # the earlier try's clients already sent their noised updates: that was a release
            m, n = self._sampled[server_round]
            self.epsilon = self.accountant.compose(Release(self.noise_multiplier, m, n, kind="train-retry"))
        n = max(population or self.num_clients, len(messages))
        self._sampled[server_round] = (len(messages), n)
        if not messages:
            return
        refuse_diverging_noise(self.dp, self.noise_multiplier, arrays, len(messages))
        self.accountant.check(Release(self.noise_multiplier, len(messages), n))
        if self.wrapper is None:
            return
        self.wrapper.num_sampled_clients = len(messages)  # type: ignore[attr-defined]
        self.view.pending = messages
        config = ConfigRecord()
        self.wrapper.configure_train(server_round, arrays, config, None)  # type: ignore[arg-type]
        for msg in messages:
            rec = msg.content[keys.CONFIG]
            assert isinstance(rec, ConfigRecord)
            for k, v in config.items():
                rec[k] = v

    def average(self, server_round: int, replies: list[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's DP wrapper (central) or the plain equal-weight mean (local), then one accounted release."""
        sampled, population = self._sampled.pop(server_round, (len(replies), max(self.num_clients, len(replies))))
        if not replies:
            return None, None
        release = Release(self.noise_multiplier, max(sampled, 1), max(population, sampled, 1))
        self.accountant.check(release)  # the release about to happen, as it will be composed
        if self.wrapper is not None:
            # std z C / (replies) on their mean = z C on their sum: the multiplier stays z whoever dropped out
            self.wrapper.num_sampled_clients = len(replies)  # type: ignore[attr-defined]
            # Flower's wrappers draw their noise from np.random: seeded by (seed, round), so the noise is the
            # same whatever ran before (a resumed run, another reply order)
            with seeded_numpy(self.seed, "dp-noise", server_round):
                arrays, metrics = self.wrapper.aggregate_train(server_round, replies)
        else:
            arrays, metrics = self.view.aggregate_train(server_round, replies)
        if arrays is not None:
            self.last_noise_multiplier = self.noise_multiplier
            self.last_noise_std = noise_std_per_coordinate(self.dp, self.noise_multiplier, self.clipping_norm,
                                                           len(replies))
            self.epsilon = self.accountant.compose(release)
        return arrays, metrics

    @property
    def clipping_norm(self) -> float:
        """The current clipping norm (adaptive clipping moves it)."""
        return float(getattr(self.wrapper, "clipping_norm", self.dp.clipping_norm))

    def account_release(self, noise_multiplier: float, sample_size: int) -> float:
        """Compose a Gaussian release made outside the averaging step (``strategy=analytic``'s noisy sums).

        Checks ``max_epsilon`` first; the epsilon reported every round then covers it too. Every
        client that holds statistics is summed, so no subsampling amplification is claimed.
        """
        release = Release(noise_multiplier, max(sample_size, 1), max(sample_size, 1), kind="analytic")
        self.accountant.check(release)
        self.last_noise_multiplier = noise_multiplier
        self.epsilon = self.accountant.compose(release)
        return self.epsilon

    # ---- FOT's GPSE sums (fedcl/privacy/gpse.py) ----------------------------------------------
    def release_gpse(self, task_id: int, sums: GpseSums, clients: int, max_samples: int) -> GpseSums:
        """FOT's summed sketches and ratio statistics with Gaussian noise, composed as one release.

        ``clients``: those whose replies were summed (every client that trained the task was asked:
        no subsampling, so the release's population is its sample). ``max_samples``: the bound on a
        client's samples (``strategy.gpse_max_samples``), which sizes the sensitivity.
        """
        z = self.dp.gpse_noise_multiplier or self.noise_multiplier
        release = Release(z, max(clients, 1), max(clients, 1), kind="gpse")
        self.accountant.check(release)
        rng = np.random.default_rng(derive_seed(self.seed, "dp-gpse-noise", task_id))
        noised = add_gpse_noise(sums, z, max_samples, rng)
        self.epsilon = self.accountant.compose(release)
        return noised

    # ---- round hook ------------------------------------------------------------------------
    def round_metrics(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """Cumulative epsilon at delta, the round's noise multiplier, noise std per coordinate and clipping norm."""
        row: dict[str, Any] = {"epsilon": self.epsilon, "delta": self.dp.delta,
                               "noise_multiplier": self.last_noise_multiplier, "dp_noise_std": self.last_noise_std,
                               "dp_releases": self.accountant.releases}
        if self.wrapper is not None:
            row["clipping_norm"] = self.clipping_norm
        return row

    def summary(self) -> dict[str, Any]:
        """``privacy`` in summary.json: epsilon over every release of the stream, and the releases by kind."""
        return {"privacy": {**self.round_metrics(0, ArrayRecord()), "sampling": self.dp.sampling,
                            "releases_by_kind": self.accountant.releases_by_kind()}}

    def state_dict(self) -> dict[str, Any]:
        """The accountant ledger and the (adaptive) clipping norm: a resumed run keeps spending the same budget."""
        state: dict[str, Any] = {"epsilon": self.epsilon, "accountant": self.accountant.state_dict()}
        if self.wrapper is not None:
            state["clipping_norm"] = self.clipping_norm
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.accountant.load_state_dict(state["accountant"])
        self.epsilon = self.accountant.epsilon
        if "clipping_norm" in state and self.wrapper is not None:
            self.wrapper.clipping_norm = float(state["clipping_norm"])  # type: ignore[attr-defined]


def noise_std_per_coordinate(dp: DP, noise_multiplier: float, clipping_norm: float, replies: int) -> float:
    """Std of the noise on each coordinate of the averaged update.

    Central: N(0, (z C)^2) on the sum of ``replies`` updates, so z C / m on their mean.
    Local: every client adds N(0, (sigma C)^2) to its own update: sigma C / sqrt(m) on the mean.
    """
    m = max(replies, 1)
    return noise_multiplier * clipping_norm / (m if dp.mode == "central" else math.sqrt(m))


# the noise std per coordinate a round may add, relative to the RMS of the model's weights, before the
# noised model is no model at all (measured: 3 clients, z = 1, C = 1: 13x, NaN weights by round 3)
DIVERGING_NOISE_RATIO = 2.0


def refuse_diverging_noise(dp: DP, noise_multiplier: float, arrays: ArrayRecord, clients: int) -> None:
    """A ``ConfigError`` when one round's noise per coordinate exceeds twice the RMS of the model's weights."""
    total, count = 0.0, 0
    for arr in arrays.values():
        x = arr.numpy().astype(np.float64)
        total += float(np.sum(x * x))
        count += x.size
    rms = math.sqrt(total / max(count, 1))
    std = noise_std_per_coordinate(dp, noise_multiplier, dp.clipping_norm, clients)
    if rms > 0 and std > DIVERGING_NOISE_RATIO * rms:  # an all-zero model has no scale to compare with
        raise ConfigError(
            "privacy.dp.noise_multiplier", noise_multiplier,
            f"a noise that the model survives: the noise std per coordinate of one round's average, "
            f"{'z C / m' if dp.mode == 'central' else 'sigma C / sqrt(m)'} = {std:.4g} (C = {dp.clipping_norm}, "
            f"m = {clients} clients), is {std / rms:.1f}x the RMS of the model's weights ({rms:.4g}): "
            "the noised model is noise and training diverges (NaN weights). Sample more clients per round "
            "(experiment=dp_pmnist: 100 of 1,000), or lower privacy.dp.clipping_norm / the noise"
        )


def _clip_norm_rises_when_clipping(cls: type) -> type:
    """Flower's adaptive-clipping wrapper with the sign of its norm update corrected.

    Andrew et al. (NeurIPS 2021) update ``C <- C exp(-lr (b - gamma))`` with ``b`` the
    fraction of updates *under* the norm. Flower 1.41's wrappers (server- and
    client-side) feed that rule the fraction of updates *clipped* (its ``norm_bit`` is
    true when an update was scaled down), so the norm shrinks when most updates are
    clipped and grows when few are: it runs away from the target instead of tracking
    it (measured: norm 0.1, every update of norm 20 clipped, 4 rounds: 0.089, 0.080,
    0.073, 0.066; tests/fedcl/privacy/test_dp.py). Here, with ``gamma`` =
    ``target_clipped_quantile`` the fraction of updates meant to be clipped (Flower's
    docstring): ``C <- C exp(lr (clipped - gamma))``. The noisy count, and so the privacy
    cost, is Flower's.
    """

    def _geometric_update(self: Any, clipped_fraction: float) -> None:
        self.clipping_norm *= math.exp(self.clip_norm_lr * (clipped_fraction - self.target_clipped_quantile))

    return type(cls.__name__, (cls,), {"_geometric_update": _geometric_update, "__doc__": cls.__doc__})
