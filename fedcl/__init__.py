"""fedcl: federated continual learning on Flower.

The Python API, for notebooks and scripts::

    import fedcl
    cfg = fedcl.compose(["experiment=smoke", "backend=inprocess", "seed=1"])
    summary = fedcl.run(cfg)              # the same run as `python -m simulations.run experiment=smoke ...`
    print(summary["acc"], summary["accuracy_matrix"])

:func:`compose` takes the same Hydra overrides as the command line and returns the
validated, typed :class:`Config` (``cfg.federation.num_clients``); :func:`run` runs it
with the engine ``backend`` names (``local``: a Flower simulation with its own SuperLink
and Ray; ``inprocess``: this Python process) and returns the summary (the dict written to
``summary.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedcl.config import Config, compose

__version__ = "0.2.0"


def run(config: Config | dict[str, Any], run_dir: str | Path | None = None) -> dict[str, Any]:
    """Run a config (from :func:`compose`) and return its summary; outputs go to ``run_dir``.

    ``run_dir`` defaults to ``output.dir``, else ``runs/<timestamp>`` under the current folder.
    """
    from simulations.run import run as run_config

    return run_config(config, run_dir)


__all__ = ["Config", "__version__", "compose", "run"]
