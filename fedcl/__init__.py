"""fedcl: federated continual learning on Flower.

The Python API, for notebooks and scripts::

    import fedcl
    cfg = fedcl.compose(["experiment=smoke", "backend=inprocess", "seed=1"])
    summary = fedcl.run(cfg)              # the same run as `python -m simulations.run experiment=smoke ...`
    print(summary["acc"], summary["accuracy_matrix"])

:func:`compose` takes the same Hydra overrides as the command line and returns the
validated, typed :class:`~fedcl.config.Config` (``cfg.federation.num_clients``); :func:`run`
runs it with the engine ``backend`` names (``local``: a Flower simulation with its own
SuperLink and Ray; ``inprocess``: this Python process) and returns the summary (the dict
written to ``summary.json``).

This module imports nothing at import time: Flower's simulation imports the ServerApp and
the ClientApp in two threads at once, and a package ``__init__`` that imported its own
submodules would make both threads wait on each other's module locks.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedcl.config import Config

__version__ = "0.2.0"


def compose(overrides: str | list[str] | None = None, experiment: str | None = None) -> Config:
    """``simulations/conf`` composed with Hydra overrides, validated (see :func:`fedcl.config.compose`)."""
    from fedcl.config import compose as compose_config

    return compose_config(overrides, experiment)


def run(config: Config | dict[str, Any], run_dir: str | Path | None = None) -> dict[str, Any]:
    """Run a config (from :func:`compose`) and return its summary; outputs go to ``run_dir``.

    ``run_dir`` defaults to ``output.dir``, else ``runs/<timestamp>`` under the current folder.
    """
    from simulations.run import run as run_config

    return run_config(config, run_dir)


def warm() -> AbstractContextManager[None]:
    """Keep one Flower simulation (Ray, client actors) up across the ``backend=local`` runs inside the block.

    ``with fedcl.warm(): [fedcl.run(c) for c in configs]`` pays Flower's and Ray's start-up once
    (``python -m simulations.run -m`` does the same for a grid); results equal separate runs.
    """
    from simulations.pool import warm as warm_pool

    return warm_pool()


def __getattr__(name: str) -> Any:
    if name == "Config":  # fedcl.Config, imported on first use
        from fedcl.config import Config

        return Config
    raise AttributeError(f"module 'fedcl' has no attribute {name!r}")


__all__ = ["Config", "__version__", "compose", "run", "warm"]
