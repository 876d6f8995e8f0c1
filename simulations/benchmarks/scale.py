"""Benchmark 3: scale, many logical clients with heavy client state, through real Flower + Ray simulation.

Command (results in simulations/benchmarks/results/scale.md):

    python -m simulations.benchmarks.scale [--clients 1000] [--per-round 50] [--rounds-per-task 4] \
        [--out runs/bench_scale] [overrides ...]

Split Fashion-MNIST (5 tasks), MLP 784-256-256-10, FedAvg, ``method=er_ewc``
(an ER buffer of 200 samples plus online EWC's Fisher and anchor: ~2.8 MB of
state per client), client states in the disk store (``federation.state_store=disk``).
A sampler thread sums the resident memory of every process the launcher
started (SuperLink, simulation runtime, ServerApp, Ray's GCS / raylet / actors)
every 0.5 s, as RSS (shared pages counted in every process: an upper bound)
and as PSS (shared pages split between processes). Each round's seconds come
from the run's ``metrics.jsonl``; memory per round is the sample taken when
the round's line appeared. "Flat after warm-up": the PSS at the last round
minus the PSS after the first task's rounds.
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

GiB = 2**30


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_cpu_seconds(root: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``root`` and every process below it now, by pid (gone ones skipped)."""
    tick = os.sysconf("SC_CLK_TCK")
    kids, todo, out = _children(), [root], {}
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return out


def tree_memory(root: int) -> tuple[int, int, int]:
    """(sum RSS bytes, sum PSS bytes, number of processes) of ``root`` and all its descendants."""
    kids = _children()
    todo, rss, pss, n = [root], 0, 0, 0
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            n += 1
        except OSError:
            continue
    return rss, pss, n


class MemorySampler(threading.Thread):
    """Samples :func:`tree_memory` of a process every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int, int]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            rss, pss, n = tree_memory(self.pid)
            self.samples.append((time.time(), rss, pss, n))
            self.stop_event.wait(self.interval)

    def at(self, t: float) -> tuple[int, int]:
        """(RSS, PSS) of the last sample taken at or before time ``t``."""
        best = self.samples[0] if self.samples else (0.0, 0, 0, 0)
        for s in self.samples:
            if s[0] <= t:
                best = s
        return best[1], best[2]


def run_scale(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Run through ``simulations.run`` in a child process while sampling its memory; return the figures."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    code = "import sys; from fedcl.config import compose; from simulations.run import run; " \
           "run(compose(sys.argv[2:]), sys.argv[1])"
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir), *overrides], stdout=subprocess.DEVNULL)
    sampler = MemorySampler(proc.pid)
    sampler.start()
    seen: dict[int, float] = {}
    metrics = run_dir / "metrics.jsonl"
    while proc.poll() is None:
        if metrics.exists():
            for line in metrics.read_text().splitlines():
                r = json.loads(line)["round"]
                seen.setdefault(int(r), time.time())
        time.sleep(0.25)
    sampler.stop_event.set()
    if proc.returncode != 0:
        raise RuntimeError(f"scale run failed with exit code {proc.returncode}; see {run_dir}")
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    per_round = []
    for r in rows:
        rss, pss = sampler.at(seen.get(int(r["round"]), time.time()))
        per_round.append({"round": r["round"], "seconds": r["seconds"], "rss": rss, "pss": pss,
                          "state_bytes": r.get("state_bytes")})
    return {"wall": time.time() - t0, "summary": summary, "rounds": per_round,
            "peak_rss": max(s[1] for s in sampler.samples), "peak_pss": max(s[2] for s in sampler.samples),
            "max_procs": max(s[3] for s in sampler.samples)}


def report(res: dict[str, Any], args: argparse.Namespace, overrides: list[str], load: str) -> str:
    rounds = res["rounds"]
    warm = max(1, args.rounds_per_task)  # after the first task's rounds every actor has loaded data and built state
    after = [r for r in rounds if r["round"] > warm]
    drift = (rounds[-1]["pss"] - after[0]["pss"]) / GiB if after else float("nan")
    lines = [
        f"## {args.clients} clients, {args.per_round} per round, {len(rounds)} rounds "
        f"({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Command: `python -m simulations.benchmarks.scale {' '.join(sys.argv[1:])}`",
        f"(overrides: `{' '.join(overrides)}`)",
        "",
        f"Machine: {machine()}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GiB:.0f} GiB RAM; "
        f"load averages (1/5/15 min) at start: {load}, at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
        f"- peak memory over all processes: RSS sum {res['peak_rss'] / GiB:.2f} GiB, "
        f"PSS sum {res['peak_pss'] / GiB:.2f} GiB ({res['max_procs']} processes at most); target 24 GiB",
        f"- seconds per round: median {statistics.median(r['seconds'] for r in rounds):.2f}, "
        f"after warm-up (rounds > {warm}) median "
        f"{statistics.median(r['seconds'] for r in after) if after else float('nan'):.2f}; wall {res['wall']:.0f} s",
        f"- memory after warm-up: PSS at round {after[0]['round'] if after else '-'} "
        f"{after[0]['pss'] / GiB if after else float('nan'):.2f} GiB, at the last round "
        f"{rounds[-1]['pss'] / GiB:.2f} GiB (drift {drift:+.2f} GiB)",
        f"- ACC {res['summary']['acc']:.4f}, forgetting {res['summary']['forgetting']:.4f}",
        "",
        "| round | seconds | RSS sum GiB | PSS sum GiB | mean client state MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rounds:
        sb = r["state_bytes"]
        lines.append(f"| {r['round']} | {r['seconds']:.2f} | {r['rss'] / GiB:.2f} | {r['pss'] / GiB:.2f} | "
                     f"{sb / 1e6 if isinstance(sb, (int, float)) else float('nan'):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--rounds-per-task", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_scale"))
    parser.add_argument("--results", type=Path, default=Path("simulations/benchmarks/results/scale.md"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    overrides = [
        f"federation.num_clients={args.clients}", f"federation.clients_per_round={args.per_round}",
        f"federation.rounds_per_task={args.rounds_per_task}", "method=er_ewc", "federation.state_store=disk",
        "device=cpu", "quiet=true", "output.plots=false", "checkpoint.enabled=false", *args.overrides,
    ]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res = run_scale(overrides, (args.out / f"c{args.clients}-k{args.per_round}").resolve())
    text = report(res, args, overrides, load)
    append_results(args.results, text)


if __name__ == "__main__":
    main()
