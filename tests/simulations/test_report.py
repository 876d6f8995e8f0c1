"""Report over a small fake grid of summary.json files: grouping, mean/std by hand, outputs."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from simulations.report import METRICS, report


def _cfg(strategy: str, seed: int, mu: float) -> dict:
    return {"seed": seed, "strategy": {"name": strategy, "proximal_mu": mu}, "stream": {"num_tasks": 2},
            "output": {"dir": f"/somewhere/{strategy}-{seed}", "plots": True}, "resume": None, "quiet": True}


def _write_run(d: Path, cfg: dict, acc: float, fg: float, A: list[list[float]], up: int) -> dict:
    d.mkdir(parents=True)
    s = {"acc": acc, "forgetting": fg, "forgetting_max": fg, "bwt": -fg, "fwt": 0.1, "min_acc": acc - 0.1,
         "wc_acc": acc - 0.05, "wall_time_s": 10.0 + acc, "bytes_up": up, "bytes_down": 2 * up,
         "accuracy_matrix": A, "task_end_rounds": [2, 4], "config": cfg}
    (d / "summary.json").write_text(json.dumps(s))
    rows = [{"round": r, "acc_per_task": {"0": 0.5 + 0.1 * r} | ({"1": 0.2 * r} if r > 2 else {})}
            for r in range(1, 5)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    return s


@pytest.fixture
def fake_grid(tmp_path: Path) -> tuple[Path, list[dict]]:
    runs = [
        _write_run(tmp_path / "0", _cfg("fedavg", 0, 0.0), 0.70, 0.20, [[0.9, 0.0], [0.7, 0.7]], 1000),
        _write_run(tmp_path / "1", _cfg("fedavg", 1, 0.0), 0.74, 0.10, [[0.8, 0.0], [0.7, 0.78]], 1000),
        _write_run(tmp_path / "2", _cfg("fedavg", 2, 0.0), 0.78, 0.30, [[1.0, 0.0], [0.7, 0.86]], 1000),
        _write_run(tmp_path / "3", _cfg("fedprox", 0, 0.01), 0.80, 0.05, [[0.9, 0.1], [0.85, 0.75]], 3000),
    ]
    failed = tmp_path / "4"
    failed.mkdir()
    (failed / "error.txt").write_text("Traceback ...\nfedcl.errors.DataError: no IDX files in /nonexistent\n")
    return tmp_path, runs


def test_report_groups_by_config_and_matches_hand_computed_mean_std(fake_grid: tuple[Path, list[dict]]) -> None:
    # Prepare
    root, runs = fake_grid
    # Execute
    out = report(root, plots=False)
    # Assert: two configurations, differing in strategy name (mu comes with it); seed and output dir ignored
    assert out["differing_keys"] == ["strategy.name"]
    by_name = {c["values"]["strategy.name"]: c for c in out["configs"]}
    avg, prox = by_name["fedavg"], by_name["fedprox"]
    assert avg["runs"] == 3 and avg["seeds"] == [0, 1, 2] and prox["runs"] == 1
    for m in METRICS:
        vals = [r[m] for r in runs[:3]]
        assert avg["stats"][m][0] == pytest.approx(statistics.fmean(vals))
        assert avg["stats"][m][1] == pytest.approx(statistics.stdev(vals))
    assert avg["stats"]["acc"] == pytest.approx((0.74, 0.04))  # by hand: mean 0.74, sample std 0.04
    assert avg["stats"]["forgetting"] == pytest.approx((0.20, 0.10))
    assert prox["stats"]["acc"][0] == 0.80
    assert out["failed"] == [str(root / "4")]
    # CSV: one row per configuration, differing keys as columns
    rows = list(csv.DictReader(open(out["report_csv"])))
    assert len(rows) == 2
    r = next(x for x in rows if x["strategy.name"] == "fedavg")
    assert float(r["acc_mean"]) == pytest.approx(0.74) and float(r["acc_std"]) == pytest.approx(0.04)
    assert r["runs"] == "3" and "strategy.proximal_mu" not in r
    assert next(x for x in rows if x["strategy.name"] == "fedprox")["acc_std"] == ""  # one seed: no std
    md = Path(out["report_md"]).read_text()
    assert "74.00 ± 4.00" in md and "20.00 ± 10.00" in md and "DataError: no IDX files" in md


def test_report_writes_every_plot(fake_grid: tuple[Path, list[dict]]) -> None:
    root, _ = fake_grid
    out = report(root)
    names = {Path(p).name for p in out["plots"]}
    assert {"compare_acc_forgetting.png", "compare_bytes.png", "forgetting_per_task.png"} <= names
    assert sum(n.endswith("_accuracy_matrix.png") for n in names) == 2
    assert sum(n.endswith("_round_accuracy.png") for n in names) == 2
    assert all(Path(p).stat().st_size > 1000 for p in out["plots"])


def test_report_of_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    from fedcl.errors import DataError

    with pytest.raises(DataError, match="no summary.json"):
        report(tmp_path)


def test_labels_leave_out_keys_implied_by_the_group_option_but_keep_swept_ones() -> None:
    # Prepare: fedavg vs fot (fot brings eps), and fot swept over eps
    from simulations.report import group_runs

    def run(name: str, eps: float | None) -> dict:
        strategy = {"name": name} | ({"eps": eps} if eps is not None else {})
        return {"acc": 0.5, "config": {"seed": 0, "strategy": strategy}}

    # Execute
    _, implied = group_runs([run("fedavg", None), run("fot", 0.96)])
    _, swept = group_runs([run("fedavg", None), run("fot", 0.96), run("fot", 0.9)])

    # Assert
    assert implied == ["strategy.name"]
    assert swept == ["strategy.eps", "strategy.name"]
