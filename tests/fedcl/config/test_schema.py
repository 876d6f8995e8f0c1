"""Config validation before any process starts: clear ConfigErrors, never a traceback from deep inside."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from fedcl.config import Config, compose, group_options, validate
from fedcl.data.idx import load_idx_folder, read_idx
from fedcl.errors import ConfigError, DataError, FedCLError
from tests.conftest import synthetic_overrides


@pytest.mark.parametrize(
    ("overrides", "key", "hint"),
    [
        (["+federation.num_clinets=3"], "federation.num_clinets", "did you mean 'num_clients'"),
        (["+train.lrr=0.1"], "train.lrr", "'lr'"),
        (["federation.clients_per_round=5"], "federation.clients_per_round", "[1, 3]"),
        (["federation.min_replies=4"], "federation.min_replies", "[1, 3]"),
        (["federation.round_retries=-1"], "federation.round_retries", ">= 0"),
        (["federation.round_timeout_s=0"], "federation.round_timeout_s", "> 0"),
        (["faults=crashy", "faults.crash_prob=1.5"], "faults.crash_prob", "[0, 1]"),
        (["faults.nan_prob=-0.1"], "faults.nan_prob", "[0, 1]"),
        (["strategy.aggregator=mode"], "strategy.aggregator", "median"),
        (["strategy.aggregator=trimmed_mean", "strategy.trim_beta=0.5"], "strategy.trim_beta", "[0, 0.5)"),
        (["strategy.aggregator=krum", "strategy.krum_f=1"], "strategy.krum_f", "2 * krum_f + 3"),
        (["strategy=fot", "strategy.eps=1.5"], "strategy.eps", "(0, 1]"),
        (["+model.num_heads=5"], "model.num_heads", "stream.scenario"),
        (["model.dropout=1.0"], "model.dropout", "[0, 1)"),
        (["model.hidden=[0]"], "model.hidden", "integers >= 1"),
        (["checkpoint.keep=-1"], "checkpoint.keep", ">= 0"),
        (["output.plots=maybe"], "output.plots", "true or false"),
        # found by the property test below: a list where a name belongs, a null before the unlearning check
        (["schedule.name=[null]"], "schedule.name", "offsets"),
        (["stream.synthetic.num_classes=null"], "stream.synthetic.num_classes", "integer >= 2"),
        (["privacy.dp=[]", "privacy.dp.adaptive=null"], "overrides", "simulations/conf"),
        (["stream.synthetic.num_classes=1"], "stream.synthetic.num_classes", ">= 2"),
        (["federation.state_store=cloud"], "federation.state_store", "'disk'"),
    ],
)
def test_bad_override_names_key_value_and_allowed(overrides: list[str], key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        compose(synthetic_overrides(*overrides))
    assert info.value.key == key, str(info.value)
    assert hint in str(info.value)


def test_unknown_key_in_a_config_file_and_missing_section() -> None:
    # a config file (flwr run -c config-file=...) bypasses Hydra's struct check: validate must see the typo
    cfg = compose(synthetic_overrides()).dump()
    cfg["federation"]["min_reply"] = 2
    with pytest.raises(ConfigError, match="did you mean 'min_replies'"):
        validate(cfg)
    cfg = compose(synthetic_overrides()).dump()
    del cfg["train"]
    with pytest.raises(ConfigError, match="'train'"):
        validate(cfg)
    cfg = compose(synthetic_overrides()).dump()
    cfg["stream"] = 5
    with pytest.raises(ConfigError, match="stream"):
        validate(cfg)


def test_fot_with_no_projectable_layer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a model whose only linear layers are the task heads (the shipped models always have a body)
    from fedcl import models
    from fedcl.models.heads import Heads

    class HeadsOnly(nn.Module):
        def __init__(self, in_shape: tuple[int, ...], num_classes: int, num_heads: int = 1, **_: Any) -> None:
            super().__init__()
            self.head = Heads(int(np.prod(in_shape)), num_classes, num_heads)

        def forward(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
            return self.head(x.flatten(1), task_id)  # type: ignore[no-any-return]

    monkeypatch.setitem(models.MODELS._loaded, "mlp", HeadsOnly)
    over = synthetic_overrides("strategy=fot", "stream.scenario=task_incremental")
    # Execute / Assert
    with pytest.raises(ConfigError, match="FOT needs a model with a linear or conv layer"):
        compose(over)
    compose(synthetic_overrides("stream.scenario=task_incremental"))  # FedAvg does not care


def test_defaults_and_every_experiment_validate() -> None:
    for exp in group_options("experiment"):
        assert compose([], exp).seed is not None


# ---- property: any override is accepted or refused with a fedcl error ----------------------
def _flat(d: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out += _flat(v, key + ".") if isinstance(v, dict) and v else [key]
    return out


GROUP_VALUES = {g: group_options(g) for g in ("model", "method", "strategy", "faults", "stream", "schedule",
                                              "privacy", "unlearning")}


def _keys_of_every_option() -> list[str]:
    """Every leaf key of the default config and of each group option, so option-only keys get fuzzed too."""
    keys = set(_flat(compose(synthetic_overrides()).dump()))
    for g, opts in GROUP_VALUES.items():
        for o in opts:
            try:
                keys.update(_flat(compose(synthetic_overrides(f"{g}={o}")).dump()))
            except FedCLError:  # an option that needs real data or another option alone
                pass
    return sorted(keys)


KEYS = _keys_of_every_option()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.text(alphabet="abcxyz_-0123456789.", min_size=0, max_size=8),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.sampled_from("abc"), scalars, max_size=2))


def render(v: Any) -> str:
    """Hydra override syntax for a Python value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, str):
        return "'" + v + "'"
    if isinstance(v, list):
        return "[" + ",".join(render(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{render(x)}" for k, x in v.items()) + "}"
    return str(v)


override = st.one_of(
    st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"{kv[0]}={render(kv[1])}"),
    st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"+{kv[0]}x={render(kv[1])}"),  # unknown key
    st.sampled_from(sorted(GROUP_VALUES)).flatmap(
        lambda g: st.sampled_from([*GROUP_VALUES[g], "nope"]).map(lambda o: f"{g}={o}")),
)


# The default run is derandomized (the same 60 examples every time, so CI does not fail at random on
# unrelated work); FEDCL_FUZZ_EXAMPLES=3000 searches randomly and wider, by hand or in a nightly job.
FUZZ_EXAMPLES = int(os.environ.get("FEDCL_FUZZ_EXAMPLES", "0"))


@settings(max_examples=FUZZ_EXAMPLES or 60, deadline=None, derandomize=not FUZZ_EXAMPLES,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(override, min_size=1, max_size=3))
def test_random_overrides_are_accepted_or_a_fedcl_error(overrides: list[str]) -> None:
    try:
        cfg = compose(synthetic_overrides(*overrides))
    except FedCLError:
        return
    assert isinstance(cfg, Config)


# ---- data files ---------------------------------------------------------------------------
def _write_idx(path: Path, arr: np.ndarray, code: int) -> None:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.tobytes()))


def _folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 4, 4), dtype=np.uint8), 0x08)
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 9, n, dtype=np.uint8), 0x08)


def test_truncated_gz_file_names_the_file(tmp_path: Path) -> None:
    _folder(tmp_path)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-30])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_idx_folder(tmp_path)


def test_corrupt_gz_file_names_the_file(tmp_path: Path) -> None:
    _folder(tmp_path)
    f = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(f.read_bytes())
    raw[12:20] = b"\xff" * 8  # garble the deflate stream, keep the gzip magic
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_idx_folder(tmp_path)
    with pytest.raises(DataError, match="t10k-labels"):
        read_idx(f)


@pytest.mark.parametrize(("extra", "nodes"), [
    ([], 3),                                                                   # every client trains every round
    (["federation.num_clients=10", "federation.clients_per_round=4"], 4),     # a node plays any client (disk store)
    (["federation.num_clients=10", "federation.clients_per_round=4", "backend.num_supernodes=7"], 7),
    (["federation.num_clients=10", "federation.clients_per_round=4", "federation.state_store=context"], 10),
    (["federation.num_clients=10", "federation.clients_per_round=4", "federation.node_mapping=partition"], 10),
    (["federation.num_clients=10", "federation.clients_per_round=4", "privacy=secagg"], 10),
])
def test_supernodes_default_to_the_clients_per_round_where_a_node_may_play_any_client(
        extra: list[str], nodes: int) -> None:
    # Prepare / Execute
    cfg = compose(synthetic_overrides(*extra))
    # Assert: idle nodes would cost Flower's node sweep time every round; a node bound to one client needs its own
    assert cfg.supernodes == nodes
