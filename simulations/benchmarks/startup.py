"""Time to first round: where the seconds before round 1 go, on both engines (issue 23, item 3).

Command (results in simulations/benchmarks/results/startup.md):

    python -m simulations.benchmarks.startup [--backends inprocess local] [--reps 3]
        [--tree before=/path/to/other/checkout --tree after=.] [overrides ...]

Runs ``experiment=smoke`` (default; any overrides) through ``fedcl.run`` in a fresh
process per repetition, the engines (and the code trees: ``--tree`` runs another checkout's
code with this venv, for before/after comparisons side by side) interleaved, and records: launch -> first
finished round (``metrics.jsonl``'s first line), launch -> end, and the CPU seconds
every process of the run had spent by the first round, grouped by role (launcher,
SuperLink, ``flwr run`` CLI, simulation runtime + ServerApp, Ray client actors, Ray
daemons). CPU seconds are read from ``/proc`` every 0.1 s, so they are much less
sensitive than wall time to the other jobs sharing the machine; wall times are
only comparable between variants of one interleaved run (the load is printed
with each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from simulations.benchmarks.common import append_results, machine

ROLES = ("launcher", "superlink", "flwr-cli", "simulation", "actors", "ray-daemons", "other")


def role(cmdline: str, root: int, pid: int) -> str:
    """The role of one process of a run, from its command line."""
    if pid == root:
        return "launcher"
    if "flower-superlink" in cmdline or "flower-superexec" in cmdline or "flwr-superexec" in cmdline:
        return "superlink"
    if "flwr-simulation" in cmdline or "flower-simulation" in cmdline:
        return "simulation"
    if "ClientAppActor" in cmdline or "default_worker.py" in cmdline:
        return "actors"
    if "/flwr run" in cmdline or cmdline.startswith("flwr run") or " run " in cmdline and "flwr" in cmdline:
        return "flwr-cli"
    if "ray" in cmdline or "gcs_server" in cmdline or "raylet" in cmdline:
        return "ray-daemons"
    return "other"


class TreeCpu(threading.Thread):
    """Samples the CPU seconds (user + system) of a process tree every ``interval`` s, per process."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.cpu: dict[int, float] = {}
        self.cmd: dict[int, str] = {}
        self.stop_event = threading.Event()
        self.frozen: dict[str, float] | None = None

    def run(self) -> None:
        from simulations.benchmarks.scale import tree_cpu_seconds

        while not self.stop_event.is_set():
            for pid, sec in tree_cpu_seconds(self.root).items():
                self.cpu[pid] = sec
                if not self.cmd.get(pid):
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as fh:
                            self.cmd[pid] = fh.read().replace(b"\0", b" ").decode(errors="replace")
                    except OSError:
                        continue
            self.stop_event.wait(self.interval)

    def per_process(self) -> list[tuple[str, float]]:
        """(role: first 80 characters of the command line, CPU seconds) of every process seen, most CPU first."""
        rows = [(f"{role(self.cmd.get(p, ''), self.root, p)}: {self.cmd.get(p, '')[:80]}", s)
                for p, s in self.cpu.items()]
        return sorted(rows, key=lambda r: -r[1])

    def by_role(self) -> dict[str, float]:
        out = dict.fromkeys(ROLES, 0.0)
        for pid, sec in self.cpu.items():
            out[role(self.cmd.get(pid, ""), self.root, pid)] += sec
        return out


def run_once(backend: str, overrides: list[str], run_dir: Path, tree: Path = Path(".")) -> dict[str, Any]:
    """One run in a fresh process: first-round and end times, CPU by role at the first round and at the end."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "summary.json"):
        (run_dir / name).unlink(missing_ok=True)
    code = "import sys, fedcl; fedcl.run(fedcl.compose(sys.argv[2:]), sys.argv[1])"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.time()
    # ``-c`` puts the working folder first on sys.path: the code of ``tree`` runs, on this venv
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir), f"backend={backend}", *overrides],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tree)
    sampler = TreeCpu(proc.pid)
    sampler.start()
    first, at_first, detail = float("nan"), None, []
    metrics = run_dir / "metrics.jsonl"
    while proc.poll() is None:
        if at_first is None and metrics.exists() and metrics.stat().st_size > 0:
            first, at_first, detail = time.time() - t0, sampler.by_role(), sampler.per_process()
        time.sleep(0.02)
    end = time.time() - t0
    sampler.stop_event.set()
    sampler.join()
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} run failed ({proc.returncode}): {err[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    return {"backend": backend, "first_round": first, "end": end, "inner": float(summary["wall_time_s"]),
            "rounds_s": sum(float(r["seconds"]) for r in rows), "cpu_first": at_first or {},
            "cpu_end": sampler.by_role(), "processes_first": detail, "load": load, "acc": summary["acc"]}


def table(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown: medians per engine, then CPU seconds by role at the first round."""
    lines = ["| engine | runs | launch -> first round s | launch -> end s | inner s | rounds s | "
             "CPU s before round 1 (all processes) | loads per run |", "|---" * 8 + "|"]
    backends = list(dict.fromkeys(r["backend"] for r in runs))
    for b in backends:
        rs = [r for r in runs if r["backend"] == b]
        med = {k: statistics.median(r[k] for r in rs) for k in ("first_round", "end", "inner", "rounds_s")}
        cpu = statistics.median(sum(r["cpu_first"].values()) for r in rs)
        lines.append(f"| {b} | {len(rs)} | {med['first_round']:.1f} | {med['end']:.1f} | {med['inner']:.1f} | "
                     f"{med['rounds_s']:.1f} | {cpu:.1f} | {'; '.join(r['load'] for r in rs)} |")
    lines += ["", "CPU seconds by process role before round 1 (median over runs):", "",
              "| engine | " + " | ".join(ROLES) + " |", "|---" * (len(ROLES) + 1) + "|"]
    for b in backends:
        rs = [r for r in runs if r["backend"] == b]
        cells = [f"{statistics.median(r['cpu_first'].get(k, 0.0) for r in rs):.1f}" for k in ROLES]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["inprocess", "local"], choices=["inprocess", "local"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_startup"))
    parser.add_argument("--results", type=Path, default=Path("simulations/benchmarks/results/startup.md"))
    parser.add_argument("--label", default="")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="a checkout whose code to run (repeat to compare; default: this one)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    overrides = ["experiment=smoke", "quiet=true", "output.plots=false", *args.overrides]
    trees = [(name, Path(path).resolve()) for name, _, path in (t.partition("=") for t in args.tree)]
    runs = []
    args.out.mkdir(parents=True, exist_ok=True)
    for rep in range(args.reps):
        for (name, tree), b in ((t, b) for t in trees or [("", Path("."))] for b in args.backends):  # interleaved
            variant = f"{b} {name}".strip()
            r = run_once(b, overrides, (args.out / f"{variant.replace(' ', '-')}-{rep}").resolve(), tree)
            r["backend"] = variant
            runs.append(r)
            with open(args.out / "runs.jsonl", "a") as fh:
                fh.write(json.dumps(r) + "\n")
            print(f"[{variant} rep {rep}] first round {r['first_round']:.1f} s end {r['end']:.1f} s "
                  f"CPU before round 1 {sum(r['cpu_first'].values()):.1f} s {r['cpu_first']} load {r['load']}",
                  flush=True)
    text = "\n".join([f"## {args.label or 'time to first round'} ({time.strftime('%Y-%m-%d %H:%M')})", "",
                      f"Command: `python -m simulations.benchmarks.startup {' '.join(sys.argv[1:])}`", "",
                      f"Machine: {machine()}", "", *table(runs), ""])
    append_results(args.results, text)


if __name__ == "__main__":
    main()
