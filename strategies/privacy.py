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

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

import fedcl.keys as keys
from fedcl.config.schema import DP
from fedcl.errors import ConfigError
from fedcl.hooks import RoundHook
from fedcl.privacy.accountant import StreamAccountant, local_noise_multiplier
from fedcl.seeding import seeded_numpy
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

    The accountant (:class:`~fedcl.privacy.accountant.StreamAccountant`) composes one
    release per round over every task, so ``epsilon`` in ``metrics.jsonl`` is the loss of
    the whole stream so far. FOT's GPSE sketches are not model updates: they are
    released once per task, only their sum is used, and they are not clipped or noised
    here (their privacy is not covered by the reported epsilon; run with secure
    aggregation to hide the individual sketches).

    Parameters
    ----------
    dp : DP
        ``privacy.dp``.
    seed : int
        Run seed (the noise of round r is seeded by (seed, r)).
    num_clients : int
        Logical clients (the accountant's population).
    per_round : int
        Clients sampled per round.
    weighted_by_key : str
        The sample-count metric of train replies.
    """

    name = "privacy"

    def __init__(self, dp: DP, seed: int, num_clients: int, per_round: int, weighted_by_key: str) -> None:
        self.dp, self.seed = dp, seed
        self.view = _MeanOf(weighted_by_key)
        self.wrapper: Strategy | None = None
        self.epsilon = 0.0
        self.last_noise_multiplier = 0.0
        if dp.mode == "central":
            assert dp.noise_multiplier is not None
            self.noise_multiplier = dp.noise_multiplier
            self.wrapper = self._build_wrapper(per_round)
        else:
            assert dp.epsilon is not None
            self.noise_multiplier = local_noise_multiplier(dp.epsilon, dp.delta)
        self.accountant = StreamAccountant(delta=dp.delta, population_size=num_clients, sampling=dp.sampling,
                                           max_epsilon=dp.max_epsilon)
        self._sampled: dict[int, int] = {}

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
    def configure(self, server_round: int, arrays: ArrayRecord, messages: list[Message]) -> None:
        """Check the budget; let Flower's wrapper add the clipping norm to every message's config."""
        if messages:
            self.accountant.check(self.noise_multiplier, len(messages))
        self._sampled[server_round] = len(messages)
        if self.wrapper is None:
            return
        # the wrapper's noise std is z C / m with m the round's sample (clients change with tasks)
        self.wrapper.num_sampled_clients = max(len(messages), 1)  # type: ignore[attr-defined]
        self.view.pending = messages
        config = ConfigRecord()
        self.wrapper.configure_train(server_round, arrays, config, None)  # type: ignore[arg-type]
        for m in messages:
            rec = m.content[keys.CONFIG]
            assert isinstance(rec, ConfigRecord)
            for k, v in config.items():
                rec[k] = v

    def average(self, server_round: int, replies: list[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's DP wrapper (central) or the plain equal-weight mean (local), then one accounted release."""
        sampled = self._sampled.pop(server_round, 0)
        if self.wrapper is not None:
            # Flower's wrappers draw their noise from np.random: seeded by (seed, round), so the noise is the
            # same whatever ran before (a resumed run, another reply order)
            with seeded_numpy(self.seed, "dp-noise", server_round):
                arrays, metrics = self.wrapper.aggregate_train(server_round, replies)
        else:
            arrays, metrics = self.view.aggregate_train(server_round, replies)
        if arrays is not None:
            released = len(replies)
            self.last_noise_multiplier = self._effective_noise(released, sampled or released)
            self.epsilon = self.accountant.compose(self.last_noise_multiplier, max(released, 1))
        return arrays, metrics

    def account_release(self, noise_multiplier: float, sample_size: int) -> float:
        """Compose a Gaussian release made outside the averaging step (``strategy=analytic``'s noisy sums).

        Checks ``max_epsilon`` first; the epsilon reported every round then covers it too.
        """
        self.accountant.check(noise_multiplier, max(sample_size, 1))
        self.last_noise_multiplier = noise_multiplier
        self.epsilon = self.accountant.compose(noise_multiplier, max(sample_size, 1))
        return self.epsilon

    def _effective_noise(self, received: int, sampled: int) -> float:
        """The noise multiplier of the released sum.

        Central: the wrapper adds std z C / m to the mean of ``received`` updates, i.e.
        std z C received / m to their sum (sensitivity C): fewer replies than sampled
        means less noise per client. Adaptive clipping spends part of z on the
        clipped-count query (Andrew et al. 2021); the total release is still z.
        Local: every client's own release has multiplier sigma / C.
        """
        if self.dp.mode == "local":
            return self.noise_multiplier
        return self.noise_multiplier * min(1.0, received / max(sampled, 1))

    # ---- round hook ------------------------------------------------------------------------
    def round_metrics(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """Cumulative epsilon at delta, the round's effective noise multiplier and clipping norm."""
        row: dict[str, Any] = {"epsilon": self.epsilon, "delta": self.dp.delta,
                               "noise_multiplier": self.last_noise_multiplier}
        clip = getattr(self.wrapper, "clipping_norm", None)
        if clip is not None:
            row["clipping_norm"] = float(clip)
        return row

    def summary(self) -> dict[str, Any]:
        """``privacy`` in summary.json: epsilon over the whole stream."""
        return {"privacy": self.round_metrics(0, ArrayRecord())}

    def state_dict(self) -> dict[str, Any]:
        """The accountant ledger and the (adaptive) clipping norm: a resumed run keeps spending the same budget."""
        state: dict[str, Any] = {"epsilon": self.epsilon, "accountant": self.accountant.state_dict()}
        clip = getattr(self.wrapper, "clipping_norm", None)
        if clip is not None:
            state["clipping_norm"] = float(clip)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.accountant.load_state_dict(state["accountant"])
        self.epsilon = self.accountant.epsilon
        if "clipping_norm" in state and self.wrapper is not None:
            self.wrapper.clipping_norm = float(state["clipping_norm"])  # type: ignore[attr-defined]


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
