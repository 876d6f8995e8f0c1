"""Time to first round: the apps and the engines do not import what only the end of a run needs."""

from __future__ import annotations

import subprocess
import sys

from simulations.launch import PROJECT_ROOT


def test_the_apps_and_engines_import_no_plotting_library() -> None:
    # Prepare: what the ServerApp, the ClientApp and the in-process engine import before round 1
    code = ("import sys, strategies.server_app, fedcl.client.app, simulations.inprocess; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    # Execute: in a fresh interpreter (this one has imported everything already)
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    # Assert: matplotlib (~0.3 s of CPU per process) waits for the end of the run
    assert out.stdout.strip() == "[]", out.stdout
