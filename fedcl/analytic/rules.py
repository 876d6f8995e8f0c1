"""Cross-section config rules of ``strategy=analytic`` and ``unlearning=analytic`` (called by ``fedcl.config.root``).

Which combinations give the guarantee the config asks for, checked before any process
starts: the analytic head is a closed-form solution over sums, so gradient-based unlearning
methods, local DP (not designed) and local-forgetting evaluation (no client trains after the
freeze) are refused; privacy needs a bound on each sample's features; a deletion request
can only be served by the head once the backbone is frozen.
"""

from __future__ import annotations

from typing import Any

from fedcl.config.schema import AnalyticStrategy
from fedcl.errors import ConfigError

# the root Config (fedcl.config.root imports this module: no import back, hence Any)
Config = Any

# unlearning methods that edit the model's weights by gradients or replayed updates: the analytic head has none
GRADIENT_UNLEARNERS = ("ssd", "ga", "fed_eraser")


def _req(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(key, value, allowed)


def freeze_round(cfg: Config) -> int:
    """The round after whose aggregation the backbone is frozen (0: before round 1)."""
    from fedcl.data.schedules import make_schedule

    st = cfg.strategy
    assert isinstance(st, AnalyticStrategy)
    if st.base_rounds is not None:
        return st.base_rounds
    if st.backbone is not None:
        return 0
    fed = cfg.federation
    return make_schedule(cfg.schedule, cfg.stream.num_tasks, fed.rounds_per_task, fed.num_clients,
                         cfg.seed).task_end_round(0)


def check_analytic(cfg: Config) -> None:
    """Every rule of ``strategy=analytic`` / ``unlearning=analytic``."""
    unl = cfg.unlearning_name
    st = cfg.strategy
    if not isinstance(st, AnalyticStrategy):
        _req(unl != "analytic", "unlearning.name", unl,
             "another method unless strategy=analytic: unlearning=analytic downdates that strategy's sums")
        return
    _req(unl not in GRADIENT_UNLEARNERS, "unlearning.name", unl,
         "none, retrain or analytic with strategy=analytic (its head is a closed-form solution over sums, not "
         "trained weights: use unlearning=analytic for an exact one-round downdate)")
    _req(not cfg.eval.local_forgetting, "eval.local_forgetting", True,
         "false with strategy=analytic (clients do not train after the backbone is frozen)")
    pv = cfg.privacy
    if pv.dp is not None:
        _req(pv.dp.mode == "central", "privacy.dp.mode", pv.dp.mode,
             "'central' with strategy=analytic (the server noises the summed statistics; local DP is not designed)")
    if pv.dp is not None or pv.secure_aggregation:
        _req(st.feature_bound is not None, "strategy.feature_bound", st.feature_bound,
             "a number > 0 under privacy.dp / secure aggregation: each sample's features are clipped to it, which "
             "bounds the DP sensitivity and sizes the SecAgg+ ranges")
    _base_rounds(cfg, st)
    if unl == "analytic":
        _requests_after_freeze(cfg)


def _base_rounds(cfg: Config, st: AnalyticStrategy) -> None:
    from fedcl.data.schedules import make_schedule

    fed = cfg.federation
    end0 = make_schedule(cfg.schedule, cfg.stream.num_tasks, fed.rounds_per_task, fed.num_clients,
                         cfg.seed).task_end_round(0)
    _req(st.base_rounds is None or st.base_rounds <= end0, "strategy.base_rounds", st.base_rounds,
         f"null or an integer in [0, {end0}] (FedAvg trains the backbone on task 0 only; task 0 ends at round {end0})")


def _requests_after_freeze(cfg: Config) -> None:
    from fedcl.unlearning import parse_requests

    b = freeze_round(cfg)
    for r in parse_requests(cfg.unlearning["requests"]):
        _req(r.round == 0 or r.round >= b, "unlearning.requests", cfg.unlearning["requests"],
             f"rounds 0 or >= {b} with unlearning=analytic: the backbone is frozen after round {b}, and a request "
             "before that cannot be served by the analytic head (lower strategy.base_rounds or move the request)")
