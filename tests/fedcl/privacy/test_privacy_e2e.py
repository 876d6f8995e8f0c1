"""SecAgg+ and central DP together, with FOT, through a real Flower simulation (Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedcl.config import compose
from simulations.run import run
from tests.conftest import synthetic_overrides

pytestmark = pytest.mark.e2e


def test_fot_under_secagg_and_central_dp_runs_and_reports_epsilon(tmp_path: Path) -> None:
    # Prepare: FOT (GPSE sketches through SecAgg+ at each task end), client-side clipping in the
    # ClientApp's mods, masked vectors through Flower's secaggplus_mod on Ray actors
    cfg = compose(synthetic_overrides("quiet=true", "strategy=fot", "privacy=secagg_dp",
                                      "privacy.dp.noise_multiplier=0.3", "privacy.dp.clipping_norm=1.0"))
    # Execute
    summary = run(cfg, tmp_path / "run")
    # Assert: every round released a private aggregate and epsilon only grows, across the task switch
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3, 4]
    eps = [r["epsilon"] for r in rows]
    assert eps[0] > 0 and all(b > a for a, b in zip(eps, eps[1:], strict=False))
    assert all(r["delta"] == 1e-5 and r["failures"] == 0 for r in rows)
    # SecAgg+ ran every round, nobody dropped out and no payload left its quantisation range
    assert all(r["secagg_seconds"] > 0 and r["secagg_dropped"] == 0 and r["secagg_clipped"] == 0 for r in rows)
    assert summary["privacy"]["epsilon"] == pytest.approx(eps[-1])
    assert summary["privacy"]["delta"] == 1e-5 and summary["privacy"]["secure_aggregation"] is True
    # GPSE ran through SecAgg+ and grew a basis; the model still learned something
    assert summary["strategy_state"]["basis_dims"]
    assert summary["accuracy_matrix"][0][0] > 1.0 / cfg.stream.synthetic.num_classes
