"""Shared benchmark helpers: ``run_variants`` reuses finished runs, names their folders and, table-only, starts none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulations.benchmarks import common


def test_cached_only_returns_finished_runs_and_starts_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: seed 0 of variant "A B" finished, nothing else; any attempt to run fails the test
    run_dir = tmp_path / common.slug("A B") / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"acc": 0.5}))

    def no_run(*_: Any, **__: Any) -> None:
        raise AssertionError("a table-only call started a run")

    monkeypatch.setattr(common, "run", no_run)
    # Execute
    got = common.run_variants(tmp_path, [], {"A B": [], "C": []}, [0, 1], cached_only=True)
    # Assert: the finished run, with its folder (tables read its metrics.jsonl)
    assert got == {"A B": [{"acc": 0.5, "run_dir": str(run_dir)}], "C": []}
    with pytest.raises(AssertionError, match="started a run"):
        common.run_variants(tmp_path, [], {"C": []}, [0])
