"""Client-level differential privacy composed with the continual strategies (FCLFedAvg, FOT)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedcl import keys
from fedcl.errors import ConfigError
from fedcl.privacy.accountant import StreamAccountant, local_noise_multiplier
from fedcl.seeding import seeded_numpy
from strategies.aggregation import fedavg
from strategies.fedavg import FCLFedAvg


class _AveragingView(Strategy):
    """The base strategy as Flower's DP wrappers must see it: selection + plain averaging.

    The wrapper clips every ArrayRecord of a reply and noises the average, so it must
    wrap only the averaging step: strategy payloads are taken out before it, and the
    base's post-processing (FOT's projection) runs after the noise, on the private
    average (post-processing keeps the DP guarantee).
    """

    def __init__(self, base: FCLFedAvg, uniform: bool) -> None:
        self.base = base
        self.uniform = uniform

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.base.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self.uniform:
            # the sensitivity C/m of the mean holds for equal weights only (McMahan et al. 2018)
            for r in replies:
                r.content[keys.METRICS][keys.NUM_EXAMPLES] = 1  # type: ignore[index,assignment]
        if not replies:
            return None, None
        return fedavg([r.content for r in replies], self.base.weighted_by_key)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        return None


class PrivateStrategy:
    """An FCL strategy with client-level DP (central or local) accounted over the whole stream.

    Central DP follows McMahan et al., "Learning Differentially Private Recurrent
    Language Models", ICLR 2018 (clip each client's update to norm C, add
    N(0, (z C / m)^2) to the mean of m updates), through Flower's strategy wrappers
    (``DifferentialPrivacy{Client,Server}Side{Fixed,Adaptive}Clipping``; adaptive
    clipping: Andrew et al., "Differentially Private Learning with Adaptive
    Clipping", NeurIPS 2021). Local DP is Flower's ``LocalDpMod`` on the clients
    (``fedcl/privacy/client_mod.py``); the server only accounts for it. The
    accountant (:class:`~fedcl.privacy.accountant.StreamAccountant`) composes one
    release per round over every task, so ``epsilon`` in ``metrics.jsonl`` is the
    loss of the whole stream so far.

    FOT's GPSE sketches are not model updates: they are released once per task,
    only their sum is used, and they are not clipped or noised here (their privacy
    is not covered by the reported epsilon; run with secure aggregation to hide the
    individual sketches). The projection of the update runs after the noise.

    Everything this class does not define is the base strategy's (``__getattr__``),
    so the round loop, checkpoints and FOT's ``on_task_end`` work unchanged.

    Parameters
    ----------
    base : FCLFedAvg
        The continual strategy (client selection, payloads, post-processing).
    dp : dict
        ``cfg['privacy']['dp']``.
    secure_aggregation : bool, default False
        Whether updates arrive as a SecAgg+ sum (then clipping must be client-side).
    """

    def __init__(self, base: FCLFedAvg, dp: dict[str, Any], secure_aggregation: bool = False) -> None:
        self.base = base
        self.dp_cfg = dict(dp)
        self.mode = str(dp["mode"])
        self.delta = float(dp["delta"])
        self.view = _AveragingView(base, uniform=True)
        self.wrapper: Strategy | None = None
        self.epsilon = 0.0
        self.last_noise_multiplier = 0.0
        if self.mode == "central":
            self.noise_multiplier = float(dp["noise_multiplier"])
            self.wrapper = self._build_wrapper(dp, base.clients_per_round or base.num_clients)
        else:
            self.noise_multiplier = local_noise_multiplier(float(dp["epsilon"]), self.delta)
        self.accountant = StreamAccountant(
            delta=self.delta, population_size=base.num_clients, sampling=str(dp.get("sampling", "no_amplification")),
            max_epsilon=dp.get("max_epsilon"),
        )
        self._sampled: dict[int, int] = {}
        self._released: int | None = None
        if getattr(base, "aggregator", "mean") != "mean":
            raise ConfigError("strategy.aggregator", base.aggregator,  # type: ignore[attr-defined]
                              "'mean' under differential privacy (the noise is calibrated to the mean's sensitivity)")
        base.averager = self._private_average

    def _build_wrapper(self, dp: dict[str, Any], m: int) -> Strategy:
        from flwr.serverapp import strategy as fs

        side = "Client" if dp.get("clipping", "client") == "client" else "Server"
        try:
            if dp.get("adaptive", False):
                cls = _clip_norm_rises_when_clipping(getattr(fs, f"DifferentialPrivacy{side}SideAdaptiveClipping"))
                return cls(  # type: ignore[no-any-return]
                    self.view, self.noise_multiplier, m,
                    initial_clipping_norm=float(dp["clipping_norm"]),
                    target_clipped_quantile=float(dp["target_clipped_quantile"]),
                    clip_norm_lr=float(dp["clip_norm_lr"]),
                    clipped_count_stddev=dp.get("clipped_count_stddev"),
                )
            cls = getattr(fs, f"DifferentialPrivacy{side}SideFixedClipping")
            return cls(self.view, self.noise_multiplier, float(dp["clipping_norm"]), m)  # type: ignore[no-any-return]
        except ValueError as exc:
            raise ConfigError("privacy.dp", dict(dp), str(exc)) from exc

    def __getattr__(self, name: str) -> Any:
        # only called for names this class lacks: bytes_up, schedule, on_task_end, ...
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    # ---- Flower Strategy API (what the round loop calls) -------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """The base's messages (through the DP wrapper, which adds the clipping norm)."""
        inner = self.wrapper if self.wrapper is not None else self.base
        messages = list(inner.configure_train(server_round, arrays, config, grid))
        if messages:
            self.accountant.check(self.noise_multiplier, len(messages))
        self._sampled[server_round] = len(messages)
        if self.wrapper is not None:
            # the wrapper's noise std is z C / m with m the round's sample (clients change with tasks)
            self.wrapper.num_sampled_clients = max(len(messages), 1)  # type: ignore[attr-defined]
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The base's aggregation with its averaging step replaced by clip + mean + noise, then accounting."""
        sampled = self._sampled.pop(server_round, 0)
        self._released = None
        arrays, metrics = self.base.aggregate_train(server_round, replies)
        if self._released is not None:
            self.last_noise_multiplier = self._effective_noise(self._released, sampled or self._released)
            self.epsilon = self.accountant.compose(self.last_noise_multiplier, max(self._released, 1))
        return arrays, metrics

    def _private_average(
        self, server_round: int, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FCLFedAvg's averaging step (``base.averager``): Flower's DP wrapper, or local DP's plain mean."""
        if self.wrapper is not None:
            # Flower's wrappers draw their noise from np.random: seeded by (seed, round), so the noise is the
            # same whatever ran before (a resumed run, another reply order)
            with seeded_numpy(self.base.seed, "dp-noise", server_round):
                arrays, metrics = self.wrapper.aggregate_train(server_round, replies)
        else:
            arrays, metrics = self.view.aggregate_train(server_round, replies)
        if arrays is not None:
            self._released = len(replies)
        return arrays, metrics

    def _effective_noise(self, received: int, sampled: int) -> float:
        """The noise multiplier of the released sum.

        Central: the wrapper adds std z C / m to the mean of ``received`` updates, i.e.
        std z C received / m to their sum (sensitivity C): fewer replies than sampled
        means less noise per client. Adaptive clipping spends part of z on the
        clipped-count query (Andrew et al. 2021); the total release is still z.
        Local: every client's own release has multiplier sigma / C.
        """
        if self.mode == "local":
            return self.noise_multiplier
        return self.noise_multiplier * min(1.0, received / max(sampled, 1))

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.base.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.base.aggregate_evaluate(server_round, replies)

    # ---- metrics and checkpoints ------------------------------------------------------
    def privacy_row(self) -> dict[str, float]:
        """Per-round columns of ``metrics.jsonl``: cumulative epsilon at delta."""
        row = {"epsilon": self.epsilon, "delta": self.delta, "noise_multiplier": self.last_noise_multiplier}
        clip = getattr(self.wrapper, "clipping_norm", None)
        if clip is not None:
            row["clipping_norm"] = float(clip)
        return row

    def state_dict(self) -> dict[str, Any]:
        """The base's state plus the accountant ledger and the (adaptive) clipping norm."""
        state = {**self.base.state_dict(), "epsilon": self.epsilon, "delta": self.delta,
                 "privacy_accountant": self.accountant.state_dict()}
        clip = getattr(self.wrapper, "clipping_norm", None)
        if clip is not None:
            state["clipping_norm"] = float(clip)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: a resumed run keeps spending the same budget."""
        self.base.load_state_dict(state)
        if "privacy_accountant" in state:
            self.accountant.load_state_dict(state["privacy_accountant"])
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


def with_privacy(strategy: FCLFedAvg, cfg: dict[str, Any]) -> Any:
    """``strategy`` composed with ``cfg['privacy']``: DP wrapper and/or the SecAgg+ check.

    A strategy whose server logic needs each client's own update declares it with a
    class attribute ``individual_updates_reason``; secure aggregation refuses it.
    """
    pv = cfg.get("privacy") or {}
    secagg = bool(pv.get("secure_aggregation", False))
    reason = getattr(strategy, "individual_updates_reason", None)
    if secagg and reason:
        raise ConfigError("privacy.secure_aggregation", True,
                          f"strategy '{cfg['strategy']['name']}' needs individual client updates ({reason}); "
                          "secure aggregation only gives the server their sum: use privacy=none or dp_central")
    if pv.get("dp") is None:
        return strategy
    return PrivateStrategy(strategy, pv["dp"], secure_aggregation=secagg)
