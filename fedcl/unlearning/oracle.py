"""The retrain oracle's saved models: where they live, what they excluded, and the check that they fit a run.

A ``unlearning=retrain`` run saves its model at each request round it is the oracle of
(``<run>/unlearning/oracle-round-<r>.pt``) together with the config fingerprint and
exactly what it excluded from round 1 (the requests and the resolved sample sets). A
method's run (``unlearning.oracle_dir``) loads the file of each request round and
refuses one that did not exclude exactly the data requested up to that round: with
sequential requests the oracle of round ``r`` must still have trained on the data
requested later (``unlearning.point``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fedcl.errors import ConfigError

ORACLE_DIR = "unlearning"


def oracle_path(run_dir: str | Path, server_round: int) -> Path:
    return Path(run_dir) / ORACLE_DIR / f"oracle-round-{server_round}.pt"


def save_oracle(run_dir: Path, server_round: int, state: dict[str, torch.Tensor], fingerprint: str,
                excluded: list[dict[str, Any]], samples: str, seconds: float,
                bases: dict[str, torch.Tensor] | None = None) -> Path:
    """Save the oracle model of one request round with what it excluded (request dicts, encoded samples).

    ``bases``: FOT's / GPM's subspace bases of the oracle (an unlearning run reports the principal
    angles between its own bases and these).
    """
    path = oracle_path(run_dir, server_round)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": {k: v.cpu() for k, v in state.items()}, "fingerprint": fingerprint,
                "rounds": server_round, "seconds": seconds, "excluded": excluded, "samples": samples,
                "bases": {k: v.cpu() for k, v in (bases or {}).items()}}, path)
    return path


def load_oracle(oracle_dir: str, server_round: int, fingerprint: str, excluded: list[dict[str, Any]],
                samples: str) -> dict[str, Any]:
    """The oracle of ``server_round``, checked against the run (same config, same data excluded)."""
    saved: dict[str, Any] = torch.load(oracle_path(oracle_dir, server_round), map_location="cpu",
                                       weights_only=False)
    if saved["fingerprint"] != fingerprint:
        raise ConfigError("unlearning.oracle_dir", oracle_dir,
                          "the oracle run of this very config (seed, stream, model, method, federation, train, "
                          "requests, holdout); only unlearning.name and the method's options may differ")
    if saved.get("excluded") != excluded or saved.get("samples") != samples:
        raise ConfigError("unlearning.oracle_dir", oracle_dir,
                          f"at round {server_round} an oracle without exactly the data requested up to then "
                          f"({excluded}); it excluded {saved.get('excluded')}. With requests at several rounds "
                          "run unlearning=retrain unlearning.point=k for each request round k and put their "
                          "oracle-round-<r>.pt files in one folder's unlearning/")
    return saved
