"""Config composition and validation: one composition for every launcher.

Defaults live only in ``simulations/conf`` (Hydra YAML). ``compose`` builds the
same resolved config for ``python -m simulations.run`` (Hydra), for the
ServerApp under ``flwr run`` (``experiment`` and ``overrides`` run-config keys)
and for tests. ``validate`` checks every value before any process starts and
raises :class:`~fedcl.errors.ConfigError` naming the key, the value and what is
allowed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from fedcl.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "simulations" / "conf"
GROUPS = (
    "stream", "model", "method", "strategy", "privacy", "unlearning", "backend", "schedule", "faults", "experiment"
)
SCENARIOS = ("class_incremental", "task_incremental", "domain_permuted")
PARTITIONS = ("iid", "shards", "dirichlet")
DATASETS = ("fashion_mnist", "mnist_format", "synthetic")


def group_options(group: str) -> list[str]:
    """The option names of a Hydra config group (the YAML files in its folder)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def split_overrides(overrides: str | list[str] | None) -> list[str]:
    """Hydra override strings from a shell-like string (``flwr run -c``) or a list."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return shlex.split(overrides)
    return list(overrides)


def compose(overrides: str | list[str] | None = None, experiment: str | None = None) -> dict[str, Any]:
    """Compose ``simulations/conf/config.yaml`` with overrides into a plain, validated dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    ovr = split_overrides(overrides)
    if experiment:
        ovr = [f"experiment={experiment}", *ovr]
    check_group_options(ovr)
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=ovr)
        resolved = OmegaConf.to_container(cfg, resolve=True)
    # OmegaConf raises plain ValueError/TypeError/KeyError for some malformed overrides (a key into a list)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            "overrides", " ".join(ovr), f"{first.rstrip('.')}; the keys and options are in simulations/conf"
        ) from exc
    assert isinstance(resolved, dict)
    return validate({str(k): v for k, v in resolved.items()})


def check_group_options(overrides: list[str]) -> None:
    """Name an unknown group option and list the valid ones (Hydra's message is long)."""
    for ovr in overrides:
        key, sep, value = ovr.lstrip("+~").partition("=")
        if sep and key in GROUPS and value not in ("null", ""):
            for v in value.split(","):
                if v not in group_options(key):
                    raise ConfigError(key, v, f"choose one of {group_options(key)}")


def _require(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(key, value, allowed)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check types, ranges and combinations; return ``cfg`` unchanged when valid."""
    from fedcl.config_checks import check_schema, check_semantics

    check_schema(cfg)  # structure and unknown keys first: the checks below index the sections freely
    _require(_is_int(cfg.get("seed")), "seed", cfg.get("seed"), "an integer")
    dev = cfg.get("device")
    _require(
        isinstance(dev, str) and (dev in ("auto", "cpu") or dev.startswith("cuda")),
        "device", dev, "'auto', 'cpu', 'cuda' or 'cuda:N'",
    )
    fed = cfg["federation"]
    _require(_is_int(fed["num_clients"]) and fed["num_clients"] >= 1,
             "federation.num_clients", fed["num_clients"], "an integer >= 1")
    cpr = fed.get("clients_per_round")
    _require(cpr is None or (_is_int(cpr) and 1 <= cpr <= fed["num_clients"]),
             "federation.clients_per_round", cpr, f"null or an integer in [1, {fed['num_clients']}]")
    _require(_is_int(fed["rounds_per_task"]) and fed["rounds_per_task"] >= 1,
             "federation.rounds_per_task", fed["rounds_per_task"], "an integer >= 1")
    tr = cfg["train"]
    _require(_is_num(tr["lr"]) and tr["lr"] > 0, "train.lr", tr["lr"], "a number > 0")
    _require(_is_int(tr["local_epochs"]) and tr["local_epochs"] >= 1,
             "train.local_epochs", tr["local_epochs"], "an integer >= 1")
    _require(_is_int(tr["batch_size"]) and tr["batch_size"] >= 1,
             "train.batch_size", tr["batch_size"], "an integer >= 1")
    for k in ("momentum", "weight_decay"):
        _require(_is_num(tr[k]) and tr[k] >= 0, f"train.{k}", tr[k], "a number >= 0")
    ev = cfg["eval"]
    _require(ev["subset_size"] is None or (_is_int(ev["subset_size"]) and ev["subset_size"] >= 1),
             "eval.subset_size", ev["subset_size"], "null (full test split) or an integer >= 1")
    st = cfg["stream"]
    _require(st["dataset"] in DATASETS, "stream.dataset", st["dataset"], f"one of {list(DATASETS)}")
    _require(st["scenario"] in SCENARIOS, "stream.scenario", st["scenario"], f"one of {list(SCENARIOS)}")
    _require(st["partition"] in PARTITIONS, "stream.partition", st["partition"], f"one of {list(PARTITIONS)}")
    _require(_is_int(st["num_tasks"]) and st["num_tasks"] >= 1, "stream.num_tasks", st["num_tasks"], "an integer >= 1")
    _require(_is_num(st["alpha"]) and st["alpha"] > 0, "stream.alpha", st["alpha"], "a number > 0")
    _require(_is_int(st["shards_per_client"]) and st["shards_per_client"] >= 1,
             "stream.shards_per_client", st["shards_per_client"], "an integer >= 1")
    if st["dataset"] != "synthetic":
        _require(isinstance(st.get("data_dir"), str), "stream.data_dir", st.get("data_dir"),
                 "a folder with MNIST-format IDX files")
    if st["scenario"] == "task_incremental":
        _require(cfg["model"]["name"] in ("mlp", "convnet"), "model.name", cfg["model"]["name"],
                 "a model with multi-head support")
    mu = cfg["strategy"].get("proximal_mu", 0.0)
    _require(_is_num(mu) and mu >= 0, "strategy.proximal_mu", mu, "a number >= 0")
    be = cfg["backend"]
    _require(_is_num(be["client_num_cpus"]) and be["client_num_cpus"] > 0,
             "backend.client_num_cpus", be["client_num_cpus"], "a number > 0")
    _require(_is_num(be["client_num_gpus"]) and be["client_num_gpus"] >= 0,
             "backend.client_num_gpus", be["client_num_gpus"], "a number >= 0 (fractions share a GPU)")
    ns = be.get("num_supernodes")
    _require(ns is None or (_is_int(ns) and ns >= 1), "backend.num_supernodes", ns, "null or an integer >= 1")
    dc, pi = be.get("data_cache_mb", 256), be.get("pull_interval_s", 0.1)
    _require(_is_int(dc) and dc >= 0, "backend.data_cache_mb", dc, "an integer >= 0 (MiB per process; 0 = no cache)")
    _require(_is_num(pi) and 0 < pi <= 10, "backend.pull_interval_s", pi, "a number of seconds in (0, 10]")
    sm = cfg["federation"].get("state_memory_mb", 256)
    _require(_is_int(sm) and sm >= 1, "federation.state_memory_mb", sm, "an integer >= 1 (MiB of client state)")
    from fedcl.methods import available_methods

    _require(cfg["method"]["name"] in available_methods(), "method.name", cfg["method"]["name"],
             f"one of {available_methods()}")
    # plain types and ranges first, so the builders below only ever see well-typed values
    check_semantics(cfg)
    if cfg.get("schedule") is not None:
        from fedcl.data.schedules import validate_schedule

        validate_schedule(cfg)
    from fedcl.privacy.config import validate_privacy

    validate_privacy(cfg)
    from fedcl.unlearning import validate_unlearning

    validate_unlearning(cfg)
    return cfg


def to_json(cfg: dict[str, Any]) -> str:
    """Canonical JSON of a resolved config (sorted keys: equal configs, equal strings)."""
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))
