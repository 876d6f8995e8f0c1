"""The Flower ServerApp: read the run's config from ``context.run_config`` and run the round loop.

``context.run_config`` is ``[tool.flwr.app.config]`` of pyproject.toml with the ``flwr run
. -c "..."`` overrides:

* ``config-file``: a resolved config written by ``python -m simulations.run`` (wins over the rest);
* otherwise ``experiment``, the common keys given directly (``seed=3 strategy='fot'
  federation.num-clients=10 train.lr=0.1``, hyphens for underscores) and ``overrides``
  (any Hydra override strings) are composed from ``simulations/conf`` exactly as the Hydra
  launcher does;
* ``run-dir``: where outputs go (default ``runs/<timestamp>``);
* ``job-queue``: a folder of runs to serve one after the other in this one Flower run (warm grids:
  :mod:`strategies.server.jobs`, written by ``simulations/pool.py``); the keys above are then unused.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

import fedcl.packages  # noqa: F401 - before any other project module: the packages in one order
from fedcl.checkpoint import load_run_config
from fedcl.config import Config, compose, load, run_config_overrides, validate
from strategies.server.jobs import QUEUE_KEY, serve_queue
from strategies.server.loop import run_federation
from strategies.server.progress import quiet_flower_logs

app = ServerApp()
# a queued job names only its config file and folder; the other keys [tool.flwr.app.config] declares are unset
EMPTY_RUN_CONFIG: dict[str, Any] = {"config-file": "", "experiment": "", "run-dir": ""}


def load_config(run_config: dict[str, Any]) -> Config:
    """The resolved experiment config named by the run config (a resumed run: the killed run's own)."""
    # every key below is declared in [tool.flwr.app.config] (pyproject.toml): Flower always passes it
    path = str(run_config["config-file"])
    if path:
        cfg = load(path)
    else:
        cfg = compose(run_config_overrides(run_config), str(run_config["experiment"]) or None)
    if cfg.resume:
        cfg = validate(load_run_config(Path(cfg.resume)))
    return cfg


def resolve_run_dir(cfg: Config, run_config: dict[str, Any]) -> Path:
    """``run-dir`` from the run config, else ``resume``, else ``output.dir``, else ``runs/<timestamp>``."""
    run_dir = str(run_config["run-dir"]) or cfg.resume or cfg.output.dir
    if not run_dir:
        run_dir = str(Path.cwd() / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    path = Path(run_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@app.main()
def main(grid: Grid, context: Context) -> None:
    """ServerApp entry point."""
    logging.getLogger("flwr").propagate = False
    quiet_flower_logs()
    queue = str(context.run_config[QUEUE_KEY])  # declared in pyproject.toml ("": no queue)
    if queue:
        serve_queue(grid, Path(queue), run_job)
        return
    run_job(grid, dict(context.run_config))


def run_job(grid: Grid, run_config: dict[str, Any]) -> None:
    """One run: its config (``config-file`` / ``experiment`` / ``overrides``...), its folder, the round loop."""
    run_config = {**EMPTY_RUN_CONFIG, **run_config}
    cfg = load_config(run_config)
    run_dir = resolve_run_dir(cfg, run_config)
    try:
        run_federation(grid, cfg, run_dir)
    except Exception:
        # the launcher only sees flwr's exit code: leave the real cause in the run folder
        (run_dir / "error.txt").write_text(traceback.format_exc())
        raise
