"""Subspace occupancy of FOT's (and GPM's) bases, in process: metrics.jsonl, summary.json, the plot, the warning.

Also the official GPSE (``strategy.gpse_model=local``): the sketches ride on the train replies, so no
``query.gpse`` message is ever sent. Synthetic stream, 3 clients, 2 tasks x 2 rounds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import Message

from fedcl.config import compose
from fedcl.fot.protocol import GPSE_TYPE
from simulations.inprocess import InProcessGrid
from strategies.server.loop import run_federation
from tests.conftest import synthetic_overrides


class CountingGrid(InProcessGrid):
    """The in-process grid, counting the messages sent by type."""

    def __init__(self, num_nodes: int) -> None:
        super().__init__(num_nodes)
        self.types: list[str] = []

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self.types += [m.metadata.message_type for m in messages]
        return super().push_messages(messages)


def _run(root: Path, name: str, *overrides: str) -> dict[str, Any]:
    cfg = compose(synthetic_overrides("quiet=true", "output.plots=true", "checkpoint.enabled=false", *overrides))
    grid, run_dir = CountingGrid(3), root / name
    run_dir.mkdir(parents=True)
    summary = run_federation(grid, cfg, run_dir)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"summary": summary, "rows": rows, "types": grid.types, "dir": run_dir}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on shared cores
    root = tmp_path_factory.mktemp("fot_occupancy")
    yield {"paper": _run(root, "paper", "strategy=fot"),
           # the official choices, with a threshold that fills the layers in one task
           "official_full": _run(root, "official_full", "strategy=fot", "strategy.gpse_model=local",
                                 "strategy.min_new_directions=1", "strategy.eps=0.9999"),
           "gpm": _run(root, "gpm", "method=gpm")}
    torch.set_num_threads(threads)


def test_occupancy_per_layer_and_task_in_metrics_summary_and_plot(runs: dict[str, dict[str, Any]]) -> None:
    run = runs["paper"]
    sub = run["summary"]["subspace"]["fot"]
    # Assert: one entry per task end (rounds 2 and 4), in metrics.jsonl and summary.json alike
    assert [r["round"] for r in run["rows"] if "subspace_fot" in r] == [2, 4]
    assert [(h["round"], h["task"]) for h in sub["per_task"]] == [(2, 0), (4, 1)]
    assert [r["subspace_fot"] for r in run["rows"] if "subspace_fot" in r] == [h["layers"] for h in sub["per_task"]]
    first, last = (h["layers"] for h in sub["per_task"])
    assert set(first) == set(last) and first
    for layer, o in last.items():
        assert 0 < first[layer]["dim"] <= o["dim"] <= o["input_dim"]
        assert o["share"] == pytest.approx(o["dim"] / o["input_dim"])
        assert o["added"] == o["dim"] - first[layer]["dim"]
        assert first[layer]["eps_used"] == pytest.approx(0.96)  # no basis yet: eps' = eps
        assert 0 < o["eps_used"] < 0.96  # the basis already explains part of the energy
    assert sub["final"] == last and sub["warnings"] == [] and all(o["share"] < 0.9 for o in last.values())
    assert (run["dir"] / "subspace.png").stat().st_size > 0
    # global GPSE: every client of each task answers a query.gpse message at its end
    assert run["types"].count(GPSE_TYPE) == 2 * 3


def test_a_layer_past_90_percent_warns_and_local_gpse_sends_no_query(runs: dict[str, dict[str, Any]]) -> None:
    run = runs["official_full"]
    sub = run["summary"]["subspace"]["fot"]
    # Assert: the bases grew at both task ends without a single GPSE query (sketches rode on the train replies)
    assert run["types"] and GPSE_TYPE not in run["types"]
    assert [h["round"] for h in sub["per_task"]] == [2, 4]
    # every layer warns once, when it first passes 90 %, naming its N of D directions then
    expected = {}
    for h in sub["per_task"]:
        for layer, o in h["layers"].items():
            if o["share"] > 0.9 and layer not in expected:
                expected[layer] = (f"plasticity nearly exhausted: layer {layer} holds {o['dim']} of "
                                   f"{o['input_dim']} directions")
    assert expected and len(sub["warnings"]) == len(expected)
    for layer, text in expected.items():
        assert sum(w.startswith(text) for w in sub["warnings"]) == 1, (layer, sub["warnings"])


def test_gpm_occupancy_is_the_clients_mean_and_warns_on_the_fullest_client(runs: dict[str, dict[str, Any]]) -> None:
    run = runs["gpm"]
    sub = run["summary"]["subspace"]["gpm"]
    # Assert: the clients report their bases at their task ends (rounds 2 and 4); the server keeps the mean,
    # the fullest client and the count, and warns by the fullest client
    assert [r["round"] for r in run["rows"] if "subspace_gpm" in r] == [2, 4]
    assert [h["round"] for h in sub["per_task"]] == [2, 4]
    expected = {}
    for h in sub["per_task"]:
        for layer, o in h["layers"].items():
            assert o["clients"] == 3 and o["dim"] <= o["dim_max"] <= o["input_dim"]
            assert o["share"] == pytest.approx(o["dim"] / o["input_dim"]) and o["max_share"] >= o["share"]
            if o["max_share"] > 0.9 and layer not in expected:
                expected[layer] = f"layer {layer} holds {o['dim_max']} of {o['input_dim']} directions"
    assert expected and len(sub["warnings"]) == len(expected)
    assert all(any(text in w for w in sub["warnings"]) for text in expected.values())
    assert (run["dir"] / "subspace_gpm.png").stat().st_size > 0 and not (run["dir"] / "subspace.png").exists()
