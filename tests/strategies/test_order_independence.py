"""Same replies, any arrival order, bit-identical results: every strategy, aggregator, privacy mode, unlearning method.

The production round loop, strategies and ClientApp (with its privacy mods) run in this
process; only the transport is replaced by a grid that hands the server the replies in a
seeded random order (Ray returns them in whatever order its actors finish). A run is
repeated with several orders and its whole ``metrics.jsonl`` and final weights must be
bit-identical. ``test_the_order_would_matter_without_the_rule`` shows the check has teeth:
Flower's own float32 average of the same replies differs between two orders.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from fedcl import keys
from fedcl.config import compose
from simulations.inprocess import InProcessGrid
from strategies.aggregation import fedavg, in_canonical_order, weighted_mean
from strategies.server.loop import run_federation
from tests.conftest import synthetic_overrides

VOLATILE = ("seconds", "secagg_seconds", "train_seconds")


class ShuffledGrid(InProcessGrid):
    """The in-process engine's grid, handing back every batch of replies in a seeded random order."""

    def __init__(self, nodes: int, order_seed: int) -> None:
        super().__init__(nodes, client_threads=1)
        self.rng = random.Random(order_seed)

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        replies = list(super().pull_messages(message_ids))
        self.rng.shuffle(replies)
        return replies


def _run(root: Path, name: str, order_seed: int, overrides: list[str], nodes: int) -> dict[str, Any]:
    cfg = compose(synthetic_overrides("quiet=true", "output.plots=false", "checkpoint.enabled=false", *overrides))
    run_dir = root / name
    run_dir.mkdir(parents=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_federation(ShuffledGrid(nodes, order_seed), cfg, run_dir)
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        for k in VOLATILE:
            row.pop(k, None)
        row["client_metrics"] = {k: v for k, v in row["client_metrics"].items() if not k.endswith("seconds")}
    final = torch.load(run_dir / "final.pt", weights_only=False)
    return {"rows": rows, "summary": summary, "arrays": final["arrays"], "strategy": final["strategy"]}


def _assert_identical(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["rows"] == b["rows"]
    for key in ("acc", "forgetting", "accuracy_matrix", "min_acc", "wc_acc", "stability_gap"):
        assert a["summary"][key] == b["summary"][key], key
    for k, v in a["arrays"].items():
        assert torch.equal(v, b["arrays"][k]), k
    if "fot" in a["strategy"]:
        for k, v in a["strategy"]["fot"]["bases"].items():
            assert np.array_equal(v, b["strategy"]["fot"]["bases"][k]), k
    if "unlearning" in a["summary"]:
        assert _timeless(a["summary"]["unlearning"]["jobs"]) == _timeless(b["summary"]["unlearning"]["jobs"])


def _timeless(obj: Any) -> Any:
    """``obj`` without wall-clock fields (``seconds``), recursively."""
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items() if k not in ("seconds", *VOLATILE)}
    if isinstance(obj, list):
        return [_timeless(v) for v in obj]
    return obj


# (overrides, SuperNodes): SecAgg+ needs one node per client of a round
CASES: dict[str, tuple[list[str], int]] = {
    "fedavg": ([], 3),
    "fedprox": (["strategy=fedprox"], 3),
    "fot": (["strategy=fot"], 3),
    "median": (["strategy.aggregator=median"], 3),
    "trimmed_mean": (["federation.num_clients=5", "strategy.aggregator=trimmed_mean", "strategy.trim_beta=0.2"], 5),
    "krum": (["federation.num_clients=5", "strategy.aggregator=krum", "strategy.krum_f=1"], 5),
    "fot_krum": (["federation.num_clients=5", "strategy=fot", "strategy.aggregator=krum"], 5),
    "fedcurv": (["method=fedcurv"], 3),
    "er_offsets_sampled": (["method=er", "schedule=offsets", "schedule.sample_fraction=0.67"], 3),
    "dp_central_client": (["privacy=dp_central", "privacy.dp.noise_multiplier=0.1"], 3),
    "dp_central_server_adaptive": (["privacy=dp_central", "privacy.dp.clipping=server", "privacy.dp.adaptive=true",
                                    "privacy.dp.noise_multiplier=0.1"], 3),
    "dp_local": (["privacy=dp_local", "privacy.dp.epsilon=50"], 3),
    "secagg_fot": (["privacy=secagg", "strategy=fot"], 3),
    "secagg_dp": (["privacy=secagg_dp", "privacy.dp.noise_multiplier=0.1"], 3),
    "unlearn_ssd": (["unlearning=ssd", "unlearning.requests=[{round:3,kind:class,target:0}]"], 3),
    "unlearn_ga_client": (["unlearning=ga", "unlearning.requests=[{round:3,kind:client,target:1}]"], 3),
    "unlearn_fed_eraser": (["unlearning=fed_eraser", "unlearning.requests=[{round:3,kind:client,target:1}]"], 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reply_order_does_not_change_any_number(case: str, tmp_path: Path, message_identity: None) -> None:
    # Prepare
    overrides, nodes = CASES[case]
    # Execute: the same run with replies arriving in three different orders
    runs = [_run(tmp_path, f"order{s}", s, overrides, nodes) for s in (0, 1, 2)]
    # Assert: every per-round metric, the summary, the final weights (and FOT's bases) are bit-identical
    _assert_identical(runs[0], runs[1])
    _assert_identical(runs[0], runs[2])


def _pushed(messages: list[Message]) -> list[Message]:
    """Give hand-built messages the ids the SuperLink would, so replies can be matched to them."""
    for i, m in enumerate(messages):
        m.metadata.__dict__["_message_id"] = f"id{i}"
    return messages


def _replies(n: int) -> tuple[list[Message], list[Message]]:
    rng = np.random.default_rng(0)
    sent = _pushed([
        Message(RecordDict({keys.CONFIG: ConfigRecord({keys.CLIENT_ID: c})}), dst_node_id=c + 1,
                message_type=MessageType.TRAIN) for c in range(n)
    ])
    replies = []
    for i, m in enumerate(sent):
        # magnitudes spread over orders of magnitude: float32 sums of them depend on the order
        w = (rng.standard_normal((64, 64)) * 10.0 ** rng.integers(-3, 4, (64, 64))).astype(np.float32)
        replies.append(Message(RecordDict({
            keys.ARRAYS: ArrayRecord({"w": Array(w)}),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 7 + 13 * i, keys.TRAIN_LOSS: float(rng.random())}),
        }), reply_to=m))
    return sent, replies


def test_the_order_would_matter_without_the_rule(message_identity: None) -> None:
    # Prepare: the same 6 replies in two orders
    sent, replies = _replies(6)
    reordered = list(reversed(replies))
    # Execute: Flower's float32 average in arrival order, then the canonical rule
    flower_a = aggregate_arrayrecords([r.content for r in replies], keys.NUM_EXAMPLES)["w"].numpy()
    flower_b = aggregate_arrayrecords([r.content for r in reordered], keys.NUM_EXAMPLES)["w"].numpy()
    ours_a, metrics_a = fedavg([r.content for r in in_canonical_order(sent, replies)], keys.NUM_EXAMPLES)
    ours_b, metrics_b = fedavg([r.content for r in in_canonical_order(sent, reordered)], keys.NUM_EXAMPLES)
    # Assert: arrival order changes Flower's bits; it changes nothing under the rule
    assert not np.array_equal(flower_a, flower_b)
    assert np.array_equal(ours_a["w"].numpy(), ours_b["w"].numpy())
    assert dict(metrics_a) == dict(metrics_b)


def test_canonical_order_is_by_logical_client(message_identity: None) -> None:
    # Prepare: clients sent out of id order (as a sampled round may list them), replies shuffled
    sent, replies = _replies(5)
    order = [3, 0, 4, 1, 2]
    shuffled = [replies[i] for i in order]
    # Execute
    canonical = in_canonical_order(sent, shuffled)
    # Assert
    assert canonical == replies


def test_weighted_mean_accumulates_in_float64() -> None:
    # Prepare: 1 + 1e-8 is lost in float32 but not in the float64 accumulator
    a = ArrayRecord({"w": Array(np.array([1.0], dtype=np.float32))})
    b = ArrayRecord({"w": Array(np.array([1.0 + 2**-12], dtype=np.float32))})
    # Execute
    out = weighted_mean([a, b, copy.deepcopy(a)], [1.0, 1.0, 1.0])["w"].numpy()
    # Assert: exactly the float64 mean rounded once to float32
    assert out.dtype == np.float32
    assert out[0] == np.float32((2.0 + 1.0 + 2**-12) / 3.0)
