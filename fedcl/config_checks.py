"""Config checks beyond single values: structure, unknown keys and combinations that make no sense.

:func:`check_schema` runs first in :func:`fedcl.config.validate`: every section
the code indexes must be a mapping holding its required keys, and every key must
exist in ``simulations/conf`` (an unknown key, e.g. a typo in a config file given
to ``flwr run -c config-file=...``, would otherwise be silently ignored); the
error names close matches. :func:`check_semantics` runs next, before the builders: ranges of the keys
the per-value checks do not cover, and impossible combinations. Every failure
is a :class:`~fedcl.errors.ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from fedcl.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "simulations" / "conf"
# Sections the code indexes with [] (missing -> a KeyError deep inside): key -> keys it must hold
REQUIRED: dict[str, tuple[str, ...]] = {
    "federation": ("num_clients", "rounds_per_task"),
    "train": ("lr", "local_epochs", "batch_size", "momentum", "weight_decay"),
    "eval": ("subset_size", "batch_size"),
    "stream": ("dataset", "scenario", "partition", "num_tasks", "alpha", "shards_per_client"),
    "model": ("name",),
    "method": ("name",),
    "strategy": ("name",),
    "backend": ("client_num_cpus", "client_num_gpus"),
    "output": (),
}
NON_GROUP_DIRS = ("experiment", "hydra")  # experiments override existing keys; hydra/ holds launcher configs


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    """Union of keys, recursively (the schema is every key any option file has)."""
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        elif isinstance(v, dict) or k not in into:
            into[k] = dict(v) if isinstance(v, dict) else v


@lru_cache(maxsize=1)
def _schema_cached(conf_dir: str) -> dict[str, Any]:
    root = Path(conf_dir)
    base = yaml.safe_load((root / "config.yaml").read_text()) or {}
    schema: dict[str, Any] = {k: v for k, v in base.items() if k not in ("defaults", "hydra")}
    for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in NON_GROUP_DIRS):
        merged: dict[str, Any] = {}
        for f in sorted(group.glob("*.yaml")):
            data = yaml.safe_load(f.read_text()) or {}
            if isinstance(data, dict):
                _merge(merged, {k: v for k, v in data.items() if k != "defaults"})
        schema[group.name] = merged
    schema.setdefault("experiment", None)
    _add_constructor_keys(schema)
    return schema


def _init_params(cls: type) -> list[str]:
    import inspect

    return [n for n, p in inspect.signature(cls).parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _add_constructor_keys(schema: dict[str, Any]) -> None:
    """Keys the YAML does not list but the code accepts: Flower FedAvg's arguments
    (``+strategy.min_available_nodes=2``) and every method's constructor parameters."""
    from flwr.serverapp.strategy import FedAvg

    from fedcl.methods import available_methods, method_class

    strategy = schema.setdefault("strategy", {})
    for name in _init_params(FedAvg):
        strategy.setdefault(name, None)
    method = schema.setdefault("method", {})
    params = method.get("params") if isinstance(method.get("params"), dict) else {}
    for m in available_methods():
        for name in _init_params(method_class(m)):
            params.setdefault(name, None)
    if params:
        method["params"] = params


def config_schema() -> dict[str, Any]:
    """Every known key (nested), from ``simulations/conf``: ``config.yaml`` and each group's options."""
    return _schema_cached(str(CONF_DIR))


def _unknown(key: str, value: Any, known: list[str]) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return ConfigError(key, value, f"unknown key; {hint}known keys here: {sorted(known)}")


def _check_keys(value: dict[str, Any], schema: dict[str, Any], path: str) -> None:
    for k, v in value.items():
        key = f"{path}.{k}" if path else str(k)
        if not isinstance(k, str) or k not in schema:
            raise _unknown(key, v, [str(s) for s in schema])
        sub = schema[k]
        if isinstance(sub, dict) and sub:
            if isinstance(v, dict):
                _check_keys(v, sub, key)
            elif v is not None:
                raise ConfigError(key, v, f"a mapping with keys among {sorted(sub)}")


def check_schema(cfg: Any) -> None:
    """Raise :class:`ConfigError` for a non-mapping config, a missing section or key, or an unknown key."""
    if not isinstance(cfg, dict):
        raise ConfigError("(config)", cfg, "a mapping of config keys (see simulations/conf/config.yaml)")
    for section, required in REQUIRED.items():
        sec = cfg.get(section)
        if not isinstance(sec, dict):
            raise ConfigError(section, sec, "a mapping (this section is required; see simulations/conf)")
        for k in required:
            if k not in sec:
                raise ConfigError(f"{section}.{k}", "(missing)", "this key is required; see simulations/conf")
    m = cfg["model"]
    for k in ("multi_head", "num_heads"):  # before the unknown-key check: say why, not just "unknown"
        _req(k not in m, f"model.{k}", m.get(k),
             "the heads follow stream.scenario: task_incremental gives one head per task; class_incremental "
             "and domain_permuted need one shared head (remove the key)")
    _check_keys(cfg, config_schema(), "")


# ---- semantics ----------------------------------------------------------------------------
def _req(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(key, value, allowed)


def _int(v: Any, lo: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _prob(v: Any) -> bool:
    return _num(v) and 0.0 <= v <= 1.0


def _bool_keys(cfg: dict[str, Any], section: str, names: tuple[str, ...]) -> None:
    sec = cfg.get(section) or {}
    for k in names:
        if k in sec:
            _req(isinstance(sec[k], bool), f"{section}.{k}", sec[k], "true or false")


def _check_federation(cfg: dict[str, Any]) -> None:
    fed = cfg["federation"]
    per_round = fed.get("clients_per_round") or fed["num_clients"]
    _req(fed.get("state_store", "disk") in ("disk", "context"), "federation.state_store",
         fed.get("state_store"), "'disk' or 'context'")
    mr = fed.get("min_replies", 1)
    _req(_int(mr, 1) and mr <= per_round, "federation.min_replies", mr,
         f"an integer in [1, {per_round}] (clients per round)")
    _req(_int(fed.get("round_retries", 1)), "federation.round_retries", fed.get("round_retries"), "an integer >= 0")
    t = fed.get("round_timeout_s")
    _req(t is None or (_num(t) and t > 0), "federation.round_timeout_s", t, "null (backend.timeout_s) or seconds > 0")
    from strategies.node_map import MODES

    nm = fed.get("node_mapping", "modulo")
    _req(nm in MODES, "federation.node_mapping", nm,
         "'modulo' (client c -> sorted node ids[c % #nodes]) or 'partition' (the node whose partition-id is c)")


def _check_strategy(cfg: dict[str, Any]) -> None:
    from strategies.robust import check_aggregator

    st = cfg["strategy"]
    fed = cfg["federation"]
    check_aggregator(st.get("aggregator", "mean"), st.get("trim_beta", 0.1), st.get("krum_f", 0))
    per_round = fed.get("clients_per_round") or fed["num_clients"]
    if st.get("aggregator") == "krum":
        f = st.get("krum_f", 0)
        _req(per_round >= 2 * f + 3, "strategy.krum_f", f,
             f"Krum needs clients per round >= 2 * krum_f + 3; {per_round} clients allow krum_f <= "
             f"{max((per_round - 3) // 2, 0)}")
    if st.get("name") == "fot":
        _req(_num(st.get("eps", 0.96)) and 0 < st.get("eps", 0.96) <= 1, "strategy.eps", st.get("eps"),
             "an energy threshold in (0, 1]")
        _req(_num(st.get("d_eps", 0.0)) and st.get("d_eps", 0.0) >= 0, "strategy.d_eps", st.get("d_eps"),
             "a number >= 0")
        for k in ("sketch_factor", "gpse_max_samples"):
            if k in st:
                _req(_int(st[k], 1), f"strategy.{k}", st[k], "an integer >= 1")
        _check_projectable(cfg)


def _check_projectable(cfg: dict[str, Any]) -> None:
    """FOT projects linear / conv layers other than task heads: the model must have one."""
    from fedcl.models import build_model
    from fedcl.subspace import projectable_layers

    st = cfg["stream"]
    syn = st.get("synthetic") or {}
    synthetic = st["dataset"] == "synthetic"
    in_shape = tuple(syn.get("image_shape", (1, 8, 8))) if synthetic else (1, 28, 28)
    num_classes = int(syn.get("num_classes", 4)) if synthetic else 10
    heads = int(st["num_tasks"]) if st["scenario"] == "task_incremental" else 1
    try:
        model = build_model(cfg["model"], in_shape, num_classes, heads)  # type: ignore[arg-type]
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ConfigError("model", cfg["model"], f"cannot build this model: {exc}") from exc
    _req(bool(projectable_layers(model)), "strategy.name", "fot",
         f"FOT needs a model with a linear or conv layer besides the task heads; model {cfg['model']} with "
         f"{heads} heads has none (give it hidden layers, or use strategy=fedavg)")


def _check_model(cfg: dict[str, Any]) -> None:
    m = cfg["model"]
    hidden = m.get("hidden")
    if m["name"] == "mlp" and hidden is not None:
        _req(isinstance(hidden, list) and all(_int(h, 1) for h in hidden), "model.hidden", hidden,
             "a list of layer widths (integers >= 1)")
    if m["name"] == "convnet":
        ch = m.get("channels")
        _req(ch is None or (isinstance(ch, list) and all(_int(c, 1) for c in ch)), "model.channels", ch,
             "a list of channel counts (integers >= 1)")
        _req(hidden is None or _int(hidden, 1), "model.hidden", hidden, "an integer >= 1")
    d = m.get("dropout", 0.0)
    _req(_num(d) and 0 <= d < 1, "model.dropout", d, "a number in [0, 1)")


def _check_stream(cfg: dict[str, Any]) -> None:
    st = cfg["stream"]
    syn = st.get("synthetic")
    if st["dataset"] == "synthetic" and isinstance(syn, dict):
        _req(_int(syn.get("num_classes", 4), 2), "stream.synthetic.num_classes", syn.get("num_classes"),
             "an integer >= 2")
        shape = syn.get("image_shape", [1, 8, 8])
        _req(isinstance(shape, list) and len(shape) == 3 and all(_int(s, 1) for s in shape),
             "stream.synthetic.image_shape", shape, "[channels, height, width], integers >= 1")
        for k in ("train_per_class", "test_per_class"):
            _req(_int(syn.get(k, 1), 1), f"stream.synthetic.{k}", syn.get(k), "an integer >= 1")
        _req(_num(syn.get("noise", 1.0)) and syn.get("noise", 1.0) >= 0, "stream.synthetic.noise",
             syn.get("noise"), "a number >= 0")
    ms = st.get("min_samples_per_client", 1)
    _req(_int(ms), "stream.min_samples_per_client", ms, "an integer >= 0")


def _check_faults(cfg: dict[str, Any]) -> None:
    faults = cfg.get("faults")
    if faults is None:
        return
    _req(isinstance(faults, dict), "faults", faults, "a mapping (faults=none | crashy)")
    for k in ("crash_prob", "nan_prob", "delay_prob"):
        _req(_prob(faults.get(k, 0.0)), f"faults.{k}", faults.get(k), "a probability in [0, 1]")
    _req(_num(faults.get("delay_s", 0.0)) and faults.get("delay_s", 0.0) >= 0, "faults.delay_s",
         faults.get("delay_s"), "seconds >= 0")


def _check_misc(cfg: dict[str, Any]) -> None:
    _req(isinstance(cfg.get("quiet", False), bool), "quiet", cfg.get("quiet"), "true or false")
    ev = cfg["eval"]
    _req(_int(ev["batch_size"], 1), "eval.batch_size", ev["batch_size"], "an integer >= 1")
    ck = cfg.get("checkpoint") or {}
    for k in ("every_rounds", "keep"):
        if k in ck:
            _req(_int(ck[k]), f"checkpoint.{k}", ck[k], "an integer >= 0")
    _bool_keys(cfg, "checkpoint", ("enabled",))
    _bool_keys(cfg, "output", ("plots",))
    _bool_keys(cfg, "eval", ("full_test_at_task_end",))
    _bool_keys(cfg, "logging", ("tensorboard", "wandb", "mlflow"))
    out_dir = cfg["output"].get("dir")
    _req(out_dir is None or isinstance(out_dir, str), "output.dir", out_dir, "null or a folder path")


def check_semantics(cfg: dict[str, Any]) -> None:
    """Ranges and combinations (after the per-value checks of :func:`fedcl.config.validate`)."""
    _check_misc(cfg)
    _check_federation(cfg)
    _check_faults(cfg)
    _check_model(cfg)
    _check_stream(cfg)
    _check_strategy(cfg)
