"""The in-process engine: the node count is a deployment detail, never a change in the numbers."""

from __future__ import annotations

import json
from pathlib import Path

from fedcl.config import compose
from simulations.run import run
from tests.conftest import synthetic_overrides


def _rounds(run_dir: Path) -> list[tuple[float, dict[str, float]]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["train_loss"], r["loss_per_task"]) for r in rows]


def test_fewer_nodes_than_clients_give_the_numbers_of_one_node_per_client(tmp_path: Path) -> None:
    # Prepare: 6 clients, 3 sampled per round, ER (client state in the disk store); by default 3 nodes, so a node
    # plays a different logical client from round to round (client c -> node c % 3, two clients may share one)
    base = synthetic_overrides("quiet=true", "output.plots=false", "checkpoint.enabled=false", "backend=inprocess",
                               "federation.num_clients=6", "federation.clients_per_round=3", "method=er",
                               "train.batch_size=8")
    assert compose(base).supernodes == 3
    # Execute
    few = run(compose(base), tmp_path / "few")
    one_each = run(compose([*base, "backend.num_supernodes=6"]), tmp_path / "one_each")
    # Assert: the summary and every round's losses (the synthetic stream's accuracies saturate), bit for bit
    assert few["accuracy_matrix"] == one_each["accuracy_matrix"]
    for key in ("acc", "forgetting", "bwt", "min_acc", "wc_acc", "stability_gap"):
        assert few[key] == one_each[key], key
    assert _rounds(tmp_path / "few") == _rounds(tmp_path / "one_each")
