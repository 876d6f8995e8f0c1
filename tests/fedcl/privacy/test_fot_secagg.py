"""The real ClientApp under privacy: FOT's GPSE and SSD's Fisher sums through SecAgg+ match the clear ones;
Flower's clipping / local-DP mods on real train replies.

In-process grid (tests/fedcl/privacy/inproc.py) with the real ``fedcl.client.app.app``: the same handlers and
mods as on Ray, minus serialisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message

from fedcl import keys, local_eval
from fedcl.client.app import app as fedcl_app
from fedcl.client.instruction import query_config
from fedcl.config import Config, compose, to_json
from fedcl.data import build_stream
from fedcl.fot import protocol as gpse
from fedcl.models import build_model
from fedcl.unlearning import protocol as unlearning_protocol
from strategies.secagg import SecAggPlusGrid
from tests.conftest import synthetic_overrides
from tests.fedcl.privacy.inproc import InProcGrid, looks_masked, masked_vectors
from tests.strategies.helpers import make_strategy

NODES = [0, 1, 2]
# tolerance on the principal angles between the two bases: quantisation is one level, 2 * 1000 / 2^22
# ~ 5e-4, per client and sketch coordinate (sketch entries are O(10-100)); measured: largest angle
# 8e-5 rad (hidden layer) and 2.3e-4 rad (head) with ranges.sketch=1000
MAX_SIN_ANGLE = 1e-3


def _setup(*overrides: str) -> tuple[Config, Any, ArrayRecord]:
    over = ("strategy=fot", "federation.state_store=context", *overrides)
    cfg = compose(synthetic_overrides(*over))
    strategy = make_strategy(*over)
    stream = build_stream(cfg.stream, cfg.federation.num_clients, 0)
    torch.manual_seed(0)
    model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads)
    arrays = ArrayRecord({k: Array(v.detach().numpy()) for k, v in model.state_dict().items()})
    return cfg, strategy, arrays


def _bases_after_two_tasks(secure: bool) -> tuple[dict[str, np.ndarray], list[dict[str, int]], list[Message]]:
    cfg, strategy, arrays = _setup("privacy=secagg" if secure else "privacy=none")
    inner = InProcGrid(fedcl_app, NODES)
    grid = SecAggPlusGrid(inner, cfg.privacy.secagg, 1000) if secure else inner
    dims = []
    for rnd, task in ((2, 0), (4, 1)):  # the last round of each task (2 rounds per task)
        strategy.on_task_end(rnd, task, arrays, grid)
        dims.append(dict(strategy.fot.basis_dims()))
    return {k: v.numpy().astype(np.float64) for k, v in strategy.fot.bases.items()}, dims, inner.seen


def _max_sin_principal_angle(u: np.ndarray, v: np.ndarray) -> float:
    """sin of the largest principal angle between span(u) and span(v) (orthonormal columns, same rank)."""
    return float(np.linalg.norm(v - u @ (u.T @ v), 2))


def test_fot_bases_under_secagg_match_the_clear_ones(message_identity: None) -> None:
    # Prepare / Execute: GPSE at the end of both tasks, in the clear and through SecAgg+
    clear, clear_dims, clear_seen = _bases_after_two_tasks(secure=False)
    masked, masked_dims, masked_seen = _bases_after_two_tasks(secure=True)
    # Assert: in the clear the server side sees every client's sketch; under SecAgg+ never a sketch,
    # only one masked vector per client and GPSE query, uniform over the modulus
    assert sum(gpse.SKETCH in r.content for r in clear_seen) == 2 * len(NODES)
    assert not any(gpse.SKETCH in r.content or gpse.STATS in r.content for r in masked_seen)
    vectors = masked_vectors(masked_seen)
    secagg = compose(synthetic_overrides("privacy=secagg")).privacy.secagg
    assert secagg is not None
    q = secagg.quantization_range
    assert len(vectors) == 2 * len(NODES) and all(looks_masked(v, q) for v in vectors)
    # Assert: same ranks after each task, and the same subspaces up to quantisation
    assert clear_dims == masked_dims and any(d > 0 for d in clear_dims[-1].values())
    for name, u in clear.items():
        if u.shape[1]:
            assert _max_sin_principal_angle(u, masked[name]) < MAX_SIN_ANGLE, name


def _norm(a: ArrayRecord, b: ArrayRecord) -> float:
    return float(np.sqrt(sum(((a[k].numpy().astype(np.float64) - b[k].numpy()) ** 2).sum() for k in b.keys())))


@pytest.mark.parametrize("privacy", ["dp_central", "dp_local"])
def test_real_client_replies_through_clipping_and_local_dp_mods(message_identity: None, privacy: str) -> None:
    # Prepare: the real train handler, with an extra record in its reply (local evaluation), behind
    # Flower's fixedclipping_mod (central DP, client-side clipping) or LocalDpMod
    c = 0.01
    cfg, strategy, arrays = _setup(f"privacy={privacy}", f"privacy.dp.clipping_norm={c}", "strategy=fedavg",
                                   "eval.local_forgetting=true")
    grid = InProcGrid(fedcl_app, NODES)
    msgs = strategy.configure_train(1, arrays, ConfigRecord(), grid)
    # Execute
    replies = grid.send_and_receive(msgs)
    norms = [_norm(r.content[keys.ARRAYS], arrays) for r in replies]  # type: ignore[arg-type]
    extras_kept = all(local_eval.RECORD in r.content for r in replies)
    new, _ = strategy.aggregate_train(1, replies)
    # Assert: every client answered and kept its extra record; updates clipped to C (local DP: + noise)
    assert len(replies) == len(NODES) and not any(r.has_error() for r in replies) and extras_kept
    if privacy == "dp_central":
        assert all(n <= c * (1 + 1e-4) for n in norms) and max(norms) > 0.5 * c
    else:
        assert all(n > c for n in norms)  # LocalDpMod's noise dominates a tiny clipping norm
    assert new is not None and strategy.averager.round_metrics(1, new)["epsilon"] > 0


def _fisher_query(cfg: Config, arrays: ArrayRecord, action: str = "fisher") -> list[Message]:
    opts = {"action": action, "tasks": [0], "access": "history", "forget_clients": [], "forget_classes": [1],
            "drop_classes": [], "max_samples": 64}
    return [unlearning_protocol.query(arrays, query_config(to_json(cfg), 2, c, 0), opts, n)
            for c, n in enumerate(NODES)]


@pytest.mark.parametrize("action", ["fisher", "gradient"])
def test_unlearning_fisher_and_gradient_sums_under_secagg_match_the_clear_ones(
        message_identity: None, action: str) -> None:
    # Prepare: SSD's / IAU's query (fedcl/unlearning/client.py) to the real ClientApp, in the clear and masked
    cfg, _strategy, arrays = _setup("privacy=secagg")
    sa = cfg.privacy.secagg
    # Execute
    clear = InProcGrid(fedcl_app, NODES).send_and_receive(_fisher_query(cfg, arrays, action))
    assert sa is not None
    grid = SecAggPlusGrid(InProcGrid(fedcl_app, NODES), sa, 1000)
    masked = grid.send_and_receive(_fisher_query(cfg, arrays, action))
    # Assert: the sums over clients agree within one quantisation level of the payload's range per client
    # (Fisher sums: ranges.fisher; IAU's gradient sums: ranges.sketch)
    scale = sa.ranges.fisher if action == "fisher" else sa.ranges.sketch
    assert scale is not None
    bound = len(NODES) * 2 * scale / sa.quantization_range
    assert grid.last_clipped == 0 and len(masked) == len(NODES)
    names = unlearning_protocol.FISHER_KEYS if action == "fisher" else unlearning_protocol.GRAD_KEYS
    assert any(np.abs(r.content[names[0]][n].numpy()).max() > 0 for r in clear  # type: ignore[index, union-attr]
               for n in r.content[names[0]].keys())  # type: ignore[union-attr]
    for key in names:
        for name in clear[0].content[key].keys():  # type: ignore[union-attr]
            want = sum(r.content[key][name].numpy().astype(np.float64) for r in clear)  # type: ignore[index]
            got = sum(r.content[key][name].numpy().astype(np.float64) for r in masked)  # type: ignore[index]
            assert np.abs(got - want).max() <= bound, (key, name)
