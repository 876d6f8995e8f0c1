"""Resume with server and client state that matter: FOT's bases and ER + online EWC client states.

The crash comes in the middle of a round, after some clients of that round have
already trained and written their states: the resumed run must restore the
checkpointed client states (not keep the half-trained ones), FOT's bases and the
tracker, and end exactly where the uninterrupted run ends. In process (the
production ServerApp loop and ClientApp handlers; only the transport differs),
so it runs in seconds; ``tests/simulations/test_resume.py`` kills a real Flower run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Message

import fedcl.keys as keys
from fedcl.checkpoint import latest_checkpoint, load_checkpoint
from fedcl.config import Config, compose
from fedcl.errors import ConfigError
from simulations.inprocess import InProcessGrid
from strategies.server.loop import run_federation
from tests.conftest import synthetic_overrides

OVERRIDES = synthetic_overrides("strategy=fot", "method=er_ewc", "stream.num_tasks=3", "federation.num_clients=3",
                                "quiet=true", "output.plots=false")
EXACT = ("acc", "forgetting", "bwt", "accuracy_matrix", "min_acc", "wc_acc", "stability_gap")


class CrashingGrid(InProcessGrid):
    """Answers like :class:`InProcessGrid` until the second client of ``crash_round``, then raises."""

    def __init__(self, num_nodes: int, crash_round: int) -> None:
        super().__init__(num_nodes)
        self.crash_round = crash_round
        self.served_in_round = 0

    def serve(self, msg: Message) -> Message | None:
        rec = msg.content.get(keys.CONFIG)
        if (msg.metadata.message_type == "train" and isinstance(rec, ConfigRecord)
                and int(rec[keys.SERVER_ROUND]) == self.crash_round):  # type: ignore[arg-type]
            self.served_in_round += 1
            if self.served_in_round == 2:
                raise KeyboardInterrupt("simulated crash in the middle of a round")
        return super().serve(msg)


def _cfg(run_dir: Path) -> Config:
    run_dir.mkdir(parents=True)
    return compose([*OVERRIDES, f"output.dir={run_dir}"])


def test_crash_mid_round_then_resume_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    # Prepare: the uninterrupted run (2 rounds per task: checkpoints after rounds 2, 4, 6)
    ref = run_federation(InProcessGrid(3), _cfg(tmp_path / "ref"), tmp_path / "ref")
    run_dir = tmp_path / "crashed"
    cfg = _cfg(run_dir)
    # Execute 1: crash in round 5 after client 0 trained (its state file is now newer than the checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run_federation(CrashingGrid(3, crash_round=5), cfg, run_dir)
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name.startswith("round-4")
    assert any(d > 0 for d in load_checkpoint(ckpt)["strategy"]["basis_dims"].values())  # 2 GPSE rounds: bases
    # Execute 2: resume in a fresh process state (new grid, new strategy object)
    resumed = run_federation(InProcessGrid(3), cfg.replace(resume=str(run_dir)), run_dir)
    # Assert: the resumed run is the uninterrupted one, metric by metric and basis by basis
    assert resumed["resumed_from_round"] == 4
    for key in EXACT:
        assert resumed[key] == ref[key], key
    final_ref = torch.load(tmp_path / "ref" / "final.pt", weights_only=False)
    final = torch.load(run_dir / "final.pt", weights_only=False)
    for k, v in final_ref["strategy"]["fot"]["bases"].items():
        assert np.array_equal(final["strategy"]["fot"]["bases"][k], v), k
    for k, v in final_ref["arrays"].items():
        assert torch.equal(final["arrays"][k], v), k
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(1, 7))


def test_resuming_a_checkpoint_of_another_strategy_names_the_missing_entry(tmp_path: Path) -> None:
    # Prepare: a finished FedAvg run (its checkpoints hold no FOT bases)
    run_dir = tmp_path / "fedavg"
    run_dir.mkdir()
    cfg = compose(synthetic_overrides("stream.num_tasks=2", "quiet=true", "output.plots=false",
                                      f"output.dir={run_dir}"))
    run_federation(InProcessGrid(cfg.federation.num_clients), cfg, run_dir)
    fot = compose(synthetic_overrides("strategy=fot", "stream.num_tasks=2", "quiet=true", "output.plots=false",
                                      f"output.dir={run_dir}", f"resume={run_dir}"))
    # Execute / Assert: a clear ConfigError that says what to do, not a bare KeyError
    with pytest.raises(ConfigError, match="lacks the entry 'fot'.*another strategy"):
        run_federation(InProcessGrid(fot.federation.num_clients), fot, run_dir)
