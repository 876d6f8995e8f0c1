"""cProfile of a whole run, server and client side in one process (``backend=inprocess``).

Command (findings in simulations/benchmarks/results/profile.md):

    python -m simulations.benchmarks.profile_run [overrides ...] [--top 25] [--out runs/bench_profile]

Ray actors cannot be seen by cProfile in the driver, so the run goes through the
production strategy, evaluator and ClientApp handlers with the transport replaced
by direct calls. What Flower + Ray add on top is measured by ``overhead.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

from fedcl.config import compose
from simulations.run import run


def profile(overrides: list[str], out: Path, top: int) -> str:
    """Run ``overrides`` under cProfile; return the report (cumulative and own time)."""
    cfg = compose([*overrides, "backend=inprocess", "quiet=true", "output.plots=false"])
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    run(cfg, out)
    prof.disable()
    wall = time.perf_counter() - t0
    buf = io.StringIO()
    buf.write(f"overrides: {overrides}\nwall time under cProfile: {wall:.1f} s\n\n")
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    prof.dump_stats(str(out / "profile.pstats"))
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_profile"))
    args = parser.parse_args()
    print(profile(args.overrides, args.out, args.top))


if __name__ == "__main__":
    main()
