"""``strategy=analytic`` under ``privacy=dp_central`` through the real loop: clipped, noised, accounted.

A random frozen backbone (``base_rounds=0``: no FedAvg round, so every DP release is a statistics
release), features clipped to ``B = 1``. The reference is the centralised ridge on the ledger's
*clipped* features (``helpers.ledger_oracle(clip=1)``). With z = 0.001 the head is
close to it, with z = 1 it is further away and epsilon is smaller: the noise enters the sums and
the accountant composes every release. Under ``privacy=secagg`` the statistics travel through Flower's
SecAgg+ stages (the in-process grid runs the real protocol) and the head equals the same clipped reference
up to SecAgg+'s quantisation.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedcl.analytic.head import HEAD_WEIGHT
from tests.fedcl.analytic.helpers import checkpoint, ledger_oracle, rel_err, run_analytic, run_stream

DP = ("federation.num_clients=4", "strategy.base_rounds=0", "privacy=dp_central", "strategy.feature_bound=1.0")


def _gap_and_epsilon(run_dir: Path, z: float) -> tuple[float, float]:
    over = (*DP, f"privacy.dp.noise_multiplier={z}")
    summary = run_analytic(run_dir, *over)
    ck = checkpoint(run_dir, summary["task_end_rounds"][-1])
    w_cen, _, _ = ledger_oracle(ck["arrays"], run_stream(over), ck["strategy"]["analytic"]["ledger"], clip=1.0)
    return rel_err(ck["arrays"][HEAD_WEIGHT][0], w_cen), float(summary["privacy"]["epsilon"])


def test_noise_enters_the_head_and_every_release_is_accounted(tmp_path: Path) -> None:
    # Execute
    gap_small, eps_small = _gap_and_epsilon(tmp_path / "small", 0.001)
    gap_one, eps_one = _gap_and_epsilon(tmp_path / "one", 1.0)
    # Assert: near the clipped centralised solution at z = 0.001, clearly perturbed at z = 1
    assert gap_small < 0.05, (gap_small, gap_one)
    assert gap_one > 3 * gap_small and gap_one > 1e-3, (gap_small, gap_one)
    assert 0 < eps_one < eps_small < float("inf")


def test_secagg_statistics_give_the_clipped_centralised_head(tmp_path: Path) -> None:
    # Prepare
    over = ("federation.num_clients=4", "strategy.base_rounds=0", "privacy=secagg", "strategy.feature_bound=1.0")
    # Execute
    summary = run_analytic(tmp_path, *over)
    # Assert: every statistics round went through SecAgg+ (its four stages took time, nobody dropped or was
    # clipped), and the head is the clipped centralised ridge up to the quantisation of the masked sums
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["num_clients"] > 0]  # one statistics round per task; the task's other rounds idle
    assert len(rows) == 2
    assert all(r["secagg_seconds"] > 0 and r["secagg_dropped"] == 0 and r["secagg_clipped"] == 0 for r in rows)
    ck = checkpoint(tmp_path, summary["task_end_rounds"][-1])
    w_cen, _, _ = ledger_oracle(ck["arrays"], run_stream(over), ck["strategy"]["analytic"]["ledger"], clip=1.0)
    gap = rel_err(ck["arrays"][HEAD_WEIGHT][0], w_cen)
    assert gap < 3e-3, gap
    assert summary["strategy_state"]["secagg_gram_error"] > 0  # the sums were quantised, so not bit-exact
