"""Validation of the ``privacy`` config group (``simulations/conf/privacy``)."""

from __future__ import annotations

from typing import Any

from fedcl.errors import ConfigError

DP_MODES = ("central", "local")
CLIPPING = ("client", "server")
SAMPLING = ("no_amplification", "without_replacement")
# Methods that keep each client's individual updates (FedEraser-style histories, Liu et al., IWQoS
# 2021) declare it: unlearning methods with ``needs_individual_updates = True`` (fedcl/unlearning/base.py),
# strategies with ``individual_updates_reason`` (strategies/privacy.py). Secure aggregation hides exactly those.


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _req(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(key, value, allowed)


def validate_privacy(cfg: dict[str, Any]) -> None:
    """Check ``cfg['privacy']``; raise :class:`~fedcl.errors.ConfigError` naming the key.

    Parameters
    ----------
    cfg : dict
        The whole resolved config (some checks combine privacy with strategy/federation keys).
    """
    pv = cfg.get("privacy") or {}
    secagg = pv.get("secure_aggregation", False)
    _req(isinstance(secagg, bool), "privacy.secure_aggregation", secagg, "true or false")
    dp = pv.get("dp")
    if dp is not None:
        _validate_dp(dp, secagg)
    if secagg:
        _validate_secagg(cfg)


def _validate_dp(dp: Any, secagg: bool) -> None:
    mode = dp.get("mode")
    _req(mode in DP_MODES, "privacy.dp.mode", mode, f"one of {list(DP_MODES)}")
    clip = dp.get("clipping", "client")
    _req(clip in CLIPPING, "privacy.dp.clipping", clip, f"one of {list(CLIPPING)}")
    c: Any = dp.get("clipping_norm")
    _req(_num(c) and c > 0, "privacy.dp.clipping_norm", c, "a number > 0")
    delta = dp.get("delta")
    _req(_num(delta) and 0 < delta < 1, "privacy.dp.delta", delta, "a number in (0, 1)")
    samp = dp.get("sampling", "no_amplification")
    _req(samp in SAMPLING, "privacy.dp.sampling", samp, f"one of {list(SAMPLING)}")
    me = dp.get("max_epsilon")
    _req(me is None or (_num(me) and me > 0), "privacy.dp.max_epsilon", me, "null or a number > 0")
    if mode == "central":
        z = dp.get("noise_multiplier")
        _req(_num(z) and z > 0, "privacy.dp.noise_multiplier", z, "a number > 0 (central DP needs noise)")
        if secagg:
            _req(dp.get("clipping", "client") == "client", "privacy.dp.clipping", dp.get("clipping"),
                 "'client' under secure aggregation (the server only sees the sum, so it cannot clip)")
        if dp.get("adaptive", False):
            q = dp.get("target_clipped_quantile")
            _req(_num(q) and 0 <= q <= 1, "privacy.dp.target_clipped_quantile", q, "a number in [0, 1]")
            lr = dp.get("clip_norm_lr")
            _req(_num(lr) and lr > 0, "privacy.dp.clip_norm_lr", lr, "a number > 0")
            sd = dp.get("clipped_count_stddev")
            _req(sd is None or (_num(sd) and sd > 0), "privacy.dp.clipped_count_stddev", sd, "null or a number > 0")
            _req(not secagg, "privacy.dp.adaptive", True,
                 "false under secure aggregation (the clipped-count bits would travel unmasked)")
    else:
        eps: Any = dp.get("epsilon")
        _req(_num(eps) and eps > 0, "privacy.dp.epsilon", eps, "a number > 0 (local DP's per-round epsilon)")
        _req(not dp.get("adaptive", False), "privacy.dp.adaptive", True, "false for local DP (LocalDpMod clips fixed)")


def _validate_secagg(cfg: dict[str, Any]) -> None:
    sa: Any = (cfg.get("privacy") or {}).get("secagg")
    _req(isinstance(sa, dict), "privacy.secagg", sa, "a mapping (see simulations/conf/privacy/secagg.yaml)")
    unl = (cfg.get("unlearning") or {}).get("name", "none")
    _req(not _needs_individual_updates(str(unl)), "unlearning.name", unl,
         "not a history-based (FedEraser-style) method under privacy.secure_aggregation=true: it needs each "
         "client's individual updates, which secure aggregation hides; use privacy=dp_central or privacy=none")
    agg = (cfg.get("strategy") or {}).get("aggregator", "mean")
    _req(agg == "mean", "strategy.aggregator", agg,
         "'mean' under privacy.secure_aggregation=true: median, trimmed_mean and krum rank each client's own "
         "update, which secure aggregation hides (the server only gets the sum)")
    for k in ("num_shares", "reconstruction_threshold"):
        v = sa.get(k)
        _req(_num(v) and v > 0, f"privacy.secagg.{k}", v, "a fraction in (0, 1] or an integer count")
    q: Any = sa.get("quantization_range")
    m: Any = sa.get("modulus_range")
    _req(isinstance(q, int) and q > 1, "privacy.secagg.quantization_range", q, "an integer > 1")
    _req(isinstance(m, int) and m > q, "privacy.secagg.modulus_range", m, f"an integer > quantization_range ({q})")
    mw: Any = sa.get("max_weight")
    _req(mw is None or (_num(mw) and mw >= 1), "privacy.secagg.max_weight", mw,
         "null (the stream's largest client data set) or a number >= 1 (a bound on num-examples)")
    ranges = sa.get("ranges") or {}
    for k in ("update", "sketch", "stat", "fisher"):
        r: Any = ranges.get(k)
        if k == "fisher" and r is None:
            continue  # optional: SSD's Fisher sums then use the sketch range
        _req(_num(r) and r > 0, f"privacy.secagg.ranges.{k}", r, "a number > 0 (clipping range of the payload)")
    fed = cfg["federation"]
    ns: Any = cfg.get("backend", {}).get("num_supernodes")
    nodes = int(fed["num_clients"] if ns is None else ns)
    per_round = int(fed.get("clients_per_round") or fed["num_clients"])
    # SecAgg+ keeps its protocol state per SuperNode: a node may play only one logical client per round
    _req(nodes >= per_round, "backend.num_supernodes", ns,
         f"at least the clients per round ({per_round}) under secure aggregation: each SuperNode runs one "
         "SecAgg+ party per round")
    _req(per_round >= 3, "federation.num_clients", fed["num_clients"],
         "at least 3 clients per round under secure aggregation (SecAgg+ needs > 2 parties)")


def _needs_individual_updates(unlearning: str) -> bool:
    """The unlearning method's declared ``needs_individual_updates`` (unknown names: validated elsewhere)."""
    from fedcl.unlearning import METHODS, unlearner_class

    return unlearning in METHODS and bool(unlearner_class(unlearning).needs_individual_updates)
