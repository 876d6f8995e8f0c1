"""Hydra entry point: ``python -m simulations.run [overrides] [-m]``, and :func:`run`, the one way to run a config.

Composes ``simulations/conf``, validates it before anything starts, and runs the
experiment as a real Flower simulation (``backend=local``: :mod:`simulations.launch`) or
in this process (``backend=inprocess``: :mod:`simulations.inprocess`). ``-m`` runs a
grid, one run folder per job, all on one warm Flower simulation (:mod:`simulations.pool`:
SuperLink, Ray and client actors started once): a failed job leaves ``error.txt`` in its
folder and a ``failed`` line in ``<sweep dir>/index.jsonl``, and the grid goes on; the
exit code is 0 unless every job failed (then 1). ``resume=<run folder>`` continues a
killed run from its latest checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from fedcl.checkpoint import load_run_config
from fedcl.config import Config, validate
from fedcl.errors import FedCLError

ERROR_FILE = "error.txt"


def run(cfg: Config | dict[str, Any], run_dir: str | Path | None = None) -> dict[str, Any]:
    """Validate ``cfg`` and run it (Flower simulation or in process, as ``backend`` says); return the summary.

    ``run_dir`` defaults to ``output.dir``, else ``runs/<timestamp>``. With ``resume`` set,
    the run folder's own config is used and the run continues there from its latest
    checkpoint (``run_dir`` is ignored).
    """
    cfg = validate(cfg)
    if cfg.resume:
        cfg = validate(load_run_config(Path(cfg.resume)))
        run_dir = cfg.resume
    run_dir = Path(run_dir or cfg.output.dir or Path.cwd() / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    preflight(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.replace(**{"output.dir": str(run_dir)})
    # a stale error.txt from an earlier attempt would be read as this run's
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    if cfg.backend.name == "inprocess":
        from simulations.inprocess import run_inprocess

        return run_inprocess(cfg, run_dir)
    from simulations.launch import run_flower

    run_flower(cfg, run_dir)
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return summary


def preflight(cfg: Config) -> None:
    """Build the stream here, so missing or corrupt data fails before any Flower or Ray process starts.

    The stream is cached per process, so the cost is one data load per launcher
    (a grid reuses it for every job with the same stream settings).
    """
    from fedcl.data.streams import build_stream

    build_stream(cfg.stream, cfg.federation.num_clients, cfg.seed)


def record_failure(run_dir: Path, exc: BaseException) -> str:
    """Write ``run_dir/error.txt`` (the ServerApp's traceback, if it wrote one, then ours); return its text."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ERROR_FILE
    server = path.read_text() if path.exists() else ""
    ours = "".join(traceback.format_exception(exc))
    text = (server + "\n--- launcher ---\n" + ours) if server else ours
    path.write_text(text)
    return server or ours


def _cause(text: str) -> str:
    """The last line of a traceback (``DataError: ...``)."""
    lines = [x for x in text.strip().splitlines() if x.strip() and not x.startswith(" ")]
    return lines[-1] if lines else "unknown error"


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(dcfg: DictConfig) -> None:
    """Thin Hydra wrapper around :func:`run`; records grid jobs instead of stopping the grid."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from simulations import grid
    from simulations.progress import job_line

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    raw = OmegaConf.to_container(dcfg, resolve=True)
    assert isinstance(raw, dict)
    cfg: dict[str, Any] = {str(k): v for k, v in raw.items()}
    run_dir = Path(cfg.get("resume") or cfg["output"]["dir"] or hc.runtime.output_dir).resolve()
    quiet = bool(cfg["quiet"])
    t0 = time.perf_counter()
    try:
        summary = run(cfg, run_dir)
    except Exception as exc:  # noqa: BLE001 - any failure of one job is recorded; the grid goes on
        text = record_failure(run_dir, exc)
        if not multirun:
            print(f"error: {_cause(text) if not isinstance(exc, FedCLError) else exc}", file=sys.stderr)
            print(f"details: {run_dir / ERROR_FILE}", file=sys.stderr)
            sys.exit(2 if isinstance(exc, FedCLError) else 1)
        overrides = list(hc.overrides.task)
        label = grid.job_label(overrides)
        seconds = time.perf_counter() - t0
        grid.record_job(Path(hc.sweep.dir).resolve(), {
            "num": hc.job.num, "status": "failed", "overrides": overrides, "label": label,
            "run_dir": str(run_dir), "error": _cause(text), "seconds": seconds,
        })
        print(job_line(hc.job.num, grid.grid_total(), label, None, seconds, error=_cause(text)),
              file=sys.stderr, flush=True)
        return
    if multirun:
        overrides = list(hc.overrides.task)
        label = grid.job_label(overrides)
        seconds = time.perf_counter() - t0
        grid.record_job(Path(hc.sweep.dir).resolve(), {
            "num": hc.job.num, "status": "ok", "overrides": overrides, "label": label, "run_dir": str(run_dir),
            "acc": summary.get("acc"), "forgetting": summary.get("forgetting"), "seconds": seconds,
        })
        if not quiet:
            print(job_line(hc.job.num, grid.grid_total(), label, summary, seconds), flush=True)


def cli() -> None:
    """Check group options before Hydra starts, so a typo is one clear line; exit 1 if a whole grid failed."""
    from fedcl.config import check_group_options
    from simulations import grid

    args = sys.argv[1:]
    try:
        check_group_options([a for a in args if not a.startswith("-")])
    except FedCLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    multirun = "-m" in args or "--multirun" in args
    if multirun:
        grid.export_sweep_shape(args)
    # a grid's jobs (Hydra's basic launcher runs them in this process) share one Flower simulation
    from simulations.pool import warm

    with warm() if multirun else contextlib.nullcontext():
        main()
    if grid.LAST_GRID and grid.LAST_GRID.get("ok", 0) == 0:
        sys.exit(1)


if __name__ == "__main__":
    cli()
