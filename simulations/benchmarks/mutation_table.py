"""The per-file table of a `make mutants` run: killed / survived / timeout counts from mutmut's meta files.

    python -m simulations.benchmarks.mutation_table [mutants] [--survivors]

Reads ``mutants/<path>.meta`` (mutmut 3.x) and prints a Markdown table; ``--survivors`` also lists
every surviving mutant's name, to be inspected with ``mutmut show <name>``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

# mutmut 3.x exit codes (mutmut/stats.py): 1 and 3 killed, 0 survived, 33 / 5 no tests, SIGXCPU codes timeout
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "type check", None: "not checked"}
COLUMNS = ["killed", "survived", "timeout", "no tests", "not checked"]


def collect(root: Path) -> dict[str, Counter[str]]:
    """Status counts per mutated source file."""
    out: dict[str, Counter[str]] = {}
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        out[str(meta.relative_to(root))[: -len(".meta")]] = Counter(STATUS.get(c, "suspicious") for c in codes.values())
    return out


def survivors(root: Path) -> list[str]:
    names: list[str] = []
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        names += sorted(k for k, c in codes.items() if c == 0)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="mutants", type=Path)
    parser.add_argument("--survivors", action="store_true")
    args = parser.parse_args()
    table = collect(args.root)
    print("| file | mutants | " + " | ".join(COLUMNS) + " | killed / tested |")
    print("|---|---:|" + "---:|" * (len(COLUMNS) + 1))
    for path, c in table.items():
        tested = c["killed"] + c["survived"] + c["timeout"]
        score = f"{100 * (c['killed'] + c['timeout']) / tested:.1f} %" if tested else "-"
        cells = " | ".join(str(c[k]) for k in COLUMNS)
        print(f"| {path} | {sum(c.values())} | {cells} | {score} |")
    if args.survivors:
        print()
        print("\n".join(survivors(args.root)))


if __name__ == "__main__":
    main()
