"""First (decode) and later (memory-mapped cache) loads of an image-folder data set.

``python -m simulations.benchmarks.decode_cache --classes 200 --per-class 50 --out /tmp/bench_tiny``
writes a Tiny-ImageNet-shaped tree of 64 x 64 JPEGs (``classes x per_class`` train images, one val image
per class and 10 x fewer), times :func:`fedcl.data.tiny_imagenet.read_tiny_imagenet` once with an empty
cache (decode) and ``--repeats`` times with the cache, each in a fresh process (what a Ray actor does),
and appends a table to ``simulations/benchmarks/results/decode_cache.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from simulations.benchmarks.common import machine

RESULTS = Path(__file__).parent / "results" / "decode_cache.md"
_LOAD = (
    "import json, sys, time; t = time.perf_counter(); "
    "from fedcl.data.tiny_imagenet import read_tiny_imagenet; t1 = time.perf_counter(); "
    "d = read_tiny_imagenet(sys.argv[1]); s = int(d.x_train[:, 0, 0, 0].sum()); "
    "print(json.dumps({'import_s': t1 - t, 'load_s': time.perf_counter() - t1, 'n': len(d.y_train)}))"
)


def write_tree(root: Path, classes: int, per_class: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = root / "tiny-imagenet-200"
    wnids = [f"n{k:08d}" for k in range(classes)]
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for k, w in enumerate(wnids):
        (base / "train" / w / "images").mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(img).save(base / "train" / w / "images" / f"{w}_{i}.JPEG", format="JPEG")
        for i in range(max(1, per_class // 10)):
            name = f"val_{k}_{i}.JPEG"
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(base / "val" / "images" / name,
                                                                                     format="JPEG")
            lines.append(f"{name}\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def load_in_fresh_process(root: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _LOAD, str(root)], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fedcl_bench_decode_cache"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.perf_counter()
    write_tree(args.out, args.classes, args.per_class)
    write_s = time.perf_counter() - t0
    start = f"{machine()}; load (1/5/15 min) {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    first = load_in_fresh_process(args.out)
    later = [load_in_fresh_process(args.out) for _ in range(args.repeats)]
    end = f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    cache = next((args.out / "tiny-imagenet-200" / ".fedcl_cache").iterdir())
    size_mb = sum(p.stat().st_size for p in cache.iterdir()) / 2**20
    cmd = "python -m simulations.benchmarks.decode_cache " + " ".join(sys.argv[1:])
    rows = "\n".join(f"| later load {i + 1} | {r['load_s']:.3f} | {r['import_s']:.2f} |" for i, r in enumerate(later))
    text = (
        f"\n## {args.classes} classes x {args.per_class} train JPEGs (64 x 64), "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n\nCommand: `{cmd}`\n\n"
        f"Machine at start: {start}\n\nMachine at end: {end}\n\n"
        f"{first['n']} train images written in {write_s:.1f} s; cache {size_mb:.1f} MiB in {cache.name}/. "
        "Each load runs in a fresh Python process (as a Ray actor would); import = importing the reader "
        "(numpy, Pillow), load = listing + hashing the file list + decoding or mapping.\n\n"
        "| load | load s | import s |\n|---|---:|---:|\n"
        f"| first (decode, write cache) | {first['load_s']:.3f} | {first['import_s']:.2f} |\n{rows}\n"
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
