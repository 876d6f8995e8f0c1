"""Deletion requests served inside the round loop, judged against the retrain oracle.

The production ServerApp loop, strategy, unlearning runner and client handlers run
in this process (``InProcessGrid``: only the transport is replaced), on the
synthetic two-task stream (classes {0, 1} then {2, 3}, 3 clients, 2 rounds per task).
Requests are served after round 3 (task 1's first round).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedcl.config import compose
from fedcl.errors import ConfigError
from fedcl.unlearning.data import Exclusions, decode_samples
from simulations.inprocess import InProcessGrid
from strategies.server.loop import run_federation
from tests.conftest import synthetic_overrides

CLASS = "unlearning.requests=[{round:3,kind:class,target:2}]"  # class 2 of the current task 1
REQUEST = "unlearning.requests=[{round:3,kind:class,target:0}]"  # class 0 of the finished task 0
CLIENT = "unlearning.requests=[{round:3,kind:client,target:1}]"
# each method's options on this toy (stated, not hidden): SSD's alpha=10 selects nothing for a client whose
# data looks like the others'; IAU's paper step (Adam, lr 1e-3) is too small for the toy's few samples
TOY = {"none": [], "ssd": [], "ga": [], "fed_eraser": [], "iau": ["unlearning.lr=0.01"]}
TOY_CLIENT = {**TOY, "ssd": ["unlearning.alpha=1.0"]}
METHODS = ["ssd", "ga", "fed_eraser", "iau"]
# "moves towards the oracle": |forget acc - oracle's| shrinks by >= 0.1, or KL(oracle || model) on the
# forget set shrinks by >= 25 %
ACC_MARGIN, KL_MARGIN = 0.10, 0.25


def _run(root: Path, name: str, *overrides: str) -> dict[str, Any]:
    cfg = compose(synthetic_overrides("quiet=true", "output.plots=true", "checkpoint.enabled=false", *overrides))
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = run_federation(InProcessGrid(3), cfg, run_dir)
    summary["final"] = torch.load(run_dir / "final.pt", weights_only=False)["arrays"]
    summary["run_dir"] = run_dir
    return summary


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on shared cores
    yield
    torch.set_num_threads(n)


def _method_runs(root: Path, request: str, toy: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    torch.set_num_threads(1)
    out = {"retrain": _run(root, "retrain", "unlearning=retrain", request)}
    oracle = f"unlearning.oracle_dir={out['retrain']['run_dir']}"
    for m, opts in toy.items():
        for access in ("history", "buffer") if m != "none" else ("history",):
            out[f"{m}/{access}"] = _run(root, f"{m}_{access}", f"unlearning={m}", request, oracle,
                                        f"unlearning.data_access={access}", *opts)
    return out


@pytest.fixture(scope="module")
def class_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return _method_runs(tmp_path_factory.mktemp("class"), CLASS, TOY)


@pytest.fixture(scope="module")
def client_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return _method_runs(tmp_path_factory.mktemp("client"), CLIENT, TOY_CLIENT)


def _progress(job: dict[str, Any]) -> tuple[float, float]:
    """How far the step moved the model towards the oracle: forget-accuracy distance, relative forget KL."""
    o = job["oracle"]
    ref = o["report"]["forget_acc"]
    acc = abs(job["before"]["forget_acc"] - ref) - abs(job["after"]["forget_acc"] - ref)
    kl_b, kl_a = o["gap_before"]["forget_kl"], o["gap_after"]["forget_kl"]
    return acc, (kl_b - kl_a) / kl_b


def _moves_towards_the_oracle(job: dict[str, Any]) -> bool:
    acc, kl = _progress(job)
    return acc >= ACC_MARGIN or kl >= KL_MARGIN


@pytest.mark.slow
@pytest.mark.parametrize("access", ["history", "buffer"])
@pytest.mark.parametrize("method", METHODS)
def test_class_request_moves_every_method_towards_the_oracle_and_a_no_op_does_not(
        class_runs: dict[str, dict[str, Any]], method: str, access: str) -> None:
    # Assert: the no-op baseline fails the very criterion each method passes
    assert not _moves_towards_the_oracle(class_runs["none/history"]["unlearning"]["jobs"][0])
    job = class_runs[f"{method}/{access}"]["unlearning"]["jobs"][0]
    assert job["before"]["forget_acc"] > 0.8 and job["oracle"]["report"]["forget_acc"] < 0.05
    assert _moves_towards_the_oracle(job), _progress(job)


@pytest.mark.slow
@pytest.mark.parametrize("access", ["history", "buffer"])
@pytest.mark.parametrize("method", METHODS)
def test_client_request_moves_every_method_towards_the_oracle_and_a_no_op_does_not(
        client_runs: dict[str, dict[str, Any]], method: str, access: str) -> None:
    assert not _moves_towards_the_oracle(client_runs["none/history"]["unlearning"]["jobs"][0])
    job = client_runs[f"{method}/{access}"]["unlearning"]["jobs"][0]
    assert job["before"]["forget_acc"] - job["oracle"]["report"]["forget_acc"] > 0.2  # something to undo
    assert _moves_towards_the_oracle(job), _progress(job)
    # the request is served after round 3's training: client 1 trains in rounds 1-3, never in round 4
    rows = [json.loads(x) for x in (client_runs[f"{method}/{access}"]["run_dir"] / "metrics.jsonl")
            .read_text().splitlines()]
    assert [r["num_clients"] for r in rows] == [3, 3, 3, 2]


@pytest.mark.slow
def test_retrain_equals_the_run_that_never_saw_the_data(tmp_path: Path) -> None:
    # Prepare / Execute: the oracle of a class request, and the run with the class removed before training
    retrain = _run(tmp_path, "retrain", "unlearning=retrain", CLASS)
    never = _run(tmp_path, "never", "unlearning=none", "unlearning.requests=[{round:0,kind:class,target:2}]")
    # Assert: bit-for-bit the same final model and accuracies
    for k in retrain["final"]:
        assert torch.equal(retrain["final"][k], never["final"][k]), k
    assert retrain["accuracy_matrix"] == never["accuracy_matrix"]
    job = retrain["unlearning"]["jobs"][0]
    assert job["rounds"] == 3 and job["after"]["test_forget_acc"] == 0.0 and job["exact"]
    assert (retrain["run_dir"] / "unlearning" / "oracle-round-3.pt").exists()


# ---- membership inference with same-distribution non-members ------------------------------------------------
# a toy that memorises: noisy overlapping classes, few samples, 5 local epochs, 30 % held out
MEMORISE = ["seed=1", "stream.synthetic.noise=3.0", "stream.synthetic.train_per_class=60", "train.local_epochs=5",
            "unlearning.holdout=0.3", "model.hidden=[64]", "unlearning.requests=[{round:3,kind:random,target:40}]"]


@pytest.mark.slow
def test_a_no_op_scores_clearly_above_the_oracle_which_scores_near_chance(tmp_path: Path) -> None:
    # Prepare / Execute: 40 random training samples forgotten; the oracle never trained on them
    retrain = _run(tmp_path, "retrain", "unlearning=retrain", *MEMORISE)
    none = _run(tmp_path, "none", "unlearning=none", f"unlearning.oracle_dir={retrain['run_dir']}", *MEMORISE)
    job = none["unlearning"]["jobs"][0]
    oracle = job["oracle"]
    # Assert: members and non-members come from the same clients and tasks (held out before training) ...
    assert job["sizes"]["forget"] == 40 and job["sizes"]["nonmember"] >= 40
    # ... so the oracle, which saw neither, is near chance, and the no-op that kept the data is not
    assert abs(oracle["report"]["mia_auc_loss"] - 0.5) < 0.08
    assert job["after"]["mia_auc_loss"] - oracle["report"]["mia_auc_loss"] > 0.05
    assert oracle["gap_after"]["mia_auc_loss"] == pytest.approx(
        job["after"]["mia_auc_loss"] - oracle["report"]["mia_auc_loss"])
    # the calibrated attack (the oracle as reference model) sees the memorisation clearly
    assert oracle["gap_after"]["mia_auc_calibrated"] > 0.65


@pytest.mark.slow
def test_held_out_samples_never_train_and_never_reach_the_buffer(tmp_path: Path) -> None:
    # Prepare / Execute: ER keeps a reservoir of everything it trained on
    run = _run(tmp_path, "er", "unlearning=none", "method=er", "method.er.buffer_size=1000", CLASS)
    cfg = compose(synthetic_overrides("unlearning=none", CLASS))
    from fedcl.data import build_stream

    stream = build_stream(cfg.stream, 3, cfg.seed)
    excl = Exclusions.of_run(cfg)
    for c in range(3):
        buf = torch.load(run["run_dir"] / "client_state" / f"client-{c}.pt", weights_only=False)["method"]["buffer"]
        rows = {r.numpy().tobytes() for r in buf["x"]}
        for t in (0, 1):
            hx, _, _ = excl.heldout_data(*stream.client_data(t, c), t, c)
            # Assert: no held-out sample was ever trained on, so none was ever buffered
            assert hx.shape[0] > 0 and not any(r.numpy().tobytes() in rows for r in hx)
        # and class 2, forgotten at round 3, is gone from the buffer
        assert 2 not in buf["y"].tolist()


# ---- worst-case sets and sequential requests ----------------------------------------------------------------
WORST = "unlearning.requests=[{round:3,kind:worst,target:20}]"


@pytest.mark.slow
def test_worst_case_sets_are_chosen_once_handed_to_the_oracle_and_never_train_again(tmp_path: Path) -> None:
    # Prepare: the first run chooses the set on its model at round 3
    first = _run(tmp_path, "none", "unlearning=none", "method=er", WORST)
    sets = first["run_dir"] / "unlearning" / "forget-sets.json"
    # Execute / Assert: the oracle cannot choose it (it never has the model) ...
    with pytest.raises(ConfigError, match="worst-case") as err:
        _run(tmp_path, "retrain_alone", "unlearning=retrain", WORST)
    assert err.value.key == "unlearning.forget_sets"
    # ... but takes it from the file, and a method's run checks it excluded exactly that set
    oracle = _run(tmp_path, "retrain", "unlearning=retrain", "method=er", WORST, f"unlearning.forget_sets={sets}")
    ga = _run(tmp_path, "ga", "unlearning=ga", "method=er", WORST, f"unlearning.forget_sets={sets}",
              f"unlearning.oracle_dir={oracle['run_dir']}")
    job = ga["unlearning"]["jobs"][0]
    assert job["sizes"]["forget"] == 20 and job["oracle"]["report"]["forget_acc"] is not None
    # the chosen samples are the best-remembered ones: the model before the step fits them all
    assert job["before"]["forget_acc"] == 1.0
    chosen = decode_samples(json.loads(sets.read_text())["sets"]["3/worst/20"]["samples"])
    # after the request no client trains on them or keeps them in its buffer
    cfg = compose(synthetic_overrides("unlearning=none", "method=er", WORST))
    from fedcl.data import build_stream

    stream = build_stream(cfg.stream, 3, cfg.seed)
    for c, tasks in chosen.items():
        buf = torch.load(ga["run_dir"] / "client_state" / f"client-{c}.pt", weights_only=False)["method"]["buffer"]
        rows = {r.numpy().tobytes() for r in buf["x"]}
        for t, idx in tasks.items():
            x, _ = stream.client_data(t, c)
            assert not any(x[i].numpy().tobytes() in rows for i in idx)


SEQ = "unlearning.requests=[{round:2,kind:class,target:0},{round:3,kind:random,target:20}]"


@pytest.mark.slow
def test_sequential_requests_meet_the_oracle_of_each_point_per_request_and_cumulatively(tmp_path: Path) -> None:
    # Prepare: one oracle per request round (the data requested so far removed, the later request's kept)
    for k in (1, 2):
        _run(tmp_path, f"retrain{k}", "unlearning=retrain", f"unlearning.point={k}", SEQ)
    folder = tmp_path / "oracles" / "unlearning"
    folder.mkdir(parents=True)
    shutil.copy(tmp_path / "retrain1" / "unlearning" / "oracle-round-2.pt", folder)
    shutil.copy(tmp_path / "retrain2" / "unlearning" / "oracle-round-3.pt", folder)
    # Execute
    ga = _run(tmp_path, "ga", "unlearning=ga", SEQ, f"unlearning.oracle_dir={tmp_path / 'oracles'}")
    first, second = ga["unlearning"]["jobs"]
    # Assert: per-request metrics at both points, cumulative ones (class 0 + the 20 samples) at the second
    assert (first["point"], second["point"]) == (1, 2) and "cumulative" not in first
    cum = second["cumulative"]
    assert cum["sizes"]["forget"] > second["sizes"]["forget"] == 20
    assert cum["oracle"]["gap_after"]["mia_auc_calibrated"] is not None
    # the oracle of point 1 still trained on the samples requested at point 2: it is not the point-2 oracle
    p1 = torch.load(folder / "oracle-round-2.pt", weights_only=False)
    assert p1["excluded"] == [{"round": 2, "kind": "class", "target": 0}]
    # an oracle that removed everything from round 1 is refused for point 1
    _run(tmp_path, "all", "unlearning=retrain", SEQ)
    with pytest.raises(ConfigError, match="exactly the data requested up to then"):
        _run(tmp_path, "ga_bad", "unlearning=ga", SEQ, f"unlearning.oracle_dir={tmp_path / 'all'}")


def test_fot_unlearning_reports_the_largest_angle_between_its_bases_and_the_oracles(tmp_path: Path) -> None:
    # Prepare: FOT's retrain oracle (class 0 never trains, never enters GPSE) and SSD on the same request
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    oracle = _run(tmp_path, "retrain", "strategy=fot", "unlearning=retrain", REQUEST)
    # Execute
    ssd = _run(tmp_path, "ssd", "strategy=fot", "unlearning=ssd", REQUEST,
               f"unlearning.oracle_dir={oracle['run_dir']}")
    torch.set_num_threads(threads)
    # Assert: the oracle saved its bases (task 0's GPSE, round 2) with its model
    saved = torch.load(oracle["run_dir"] / "unlearning" / "oracle-round-3.pt", weights_only=False)["bases"]
    assert saved and all(U.shape[1] > 0 for U in saved.values())
    # the summary reports, per layer, the largest principal angle between SSD's run's bases (whose task-0 GPSE
    # saw class 0) and the oracle's, in radians, with both dimensions
    angles = ssd["unlearning"]["jobs"][0]["oracle"]["bases_angles"]
    assert sorted(angles) == sorted(saved)
    for layer, a in angles.items():
        assert a["dims"][1] == saved[layer].shape[1] and a["dims"][0] > 0
        assert 0.0 <= a["largest_angle_rad"] <= np.pi / 2 + 1e-9
    assert max(a["largest_angle_rad"] for a in angles.values()) > 1e-3  # the spans differ: class 0 shaped one
