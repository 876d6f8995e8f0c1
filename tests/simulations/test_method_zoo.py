"""The method-zoo benchmark driver: method list, flags, and tables from cached summaries (no runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.benchmarks import method_zoo


def _summary(acc: float, state: float) -> dict[str, float]:
    return {"acc": acc, "forgetting": 0.5, "bwt": -0.5, "min_acc": 0.1, "wc_acc": 0.2, "wall_time_s": 10.0,
            "state_bytes_mean": state, "state_bytes_max": 2 * state}


def test_zoo_runs_joint_first_naive_second_every_method_and_the_fpf_compositions() -> None:
    methods = method_zoo.zoo_methods()
    assert methods[:2] == ["joint", "naive"] and methods[-2:] == ["er+fpf", "derpp+fpf"]
    assert {"ewc", "er", "fedcurv", "gpm", "fpf", "kfpf", "kfpf_kd"} <= set(methods)
    assert len(set(methods)) == len(methods)


def test_a_composition_is_one_method_list_override() -> None:
    assert method_zoo.method_overrides("derpp+fpf") == ["method=[derpp,fpf]"]
    assert method_zoo.method_overrides("er") == ["method=er"]


def test_unknown_method_is_refused() -> None:
    with pytest.raises(SystemExit):
        method_zoo.parse_args(["--methods", "nope"])


def test_table_only_tabulates_cached_summaries_per_stream(tmp_path: Path) -> None:
    # Prepare: two seeds of naive and one of ewc on the split stream; nothing on permuted
    for method, seed, acc in [("naive", 0, 0.2), ("naive", 1, 0.4), ("ewc", 0, 0.5)]:
        run_dir = tmp_path / "out" / "split" / method / f"seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps(_summary(acc, 2048.0)))
    results = tmp_path / "zoo.md"
    # Execute
    method_zoo.main(["--seeds", "0", "1", "--methods", "naive", "ewc", "--out", str(tmp_path / "out"),
                     "--results", str(results), "--table-only", "--hidden", "100", "100"])
    # Assert
    text = results.read_text()
    assert "| naive | 2 | 30.00 ± 14.14 |" in text
    assert "| ewc | 1 | 50.00 ± 0.00 |" in text and "| 2.0 | 4.0 |" in text
    assert "Split Fashion-MNIST" in text and "Permuted Fashion-MNIST" not in text
    # forgetting is labelled as the -BWT form it is, the max-drop form has its own column, the protocol and
    # the command name the model that ran
    assert "| forgetting (= -BWT) | bwt |" in text and "| forgetting (max) |" in text
    assert "MLP 784-100-100-10" in text and "--hidden 100 100" in text
