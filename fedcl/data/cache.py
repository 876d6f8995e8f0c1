"""Decoded data sets kept on disk as ``.npy`` files and memory-mapped on later loads.

Decoding 100,000 JPEGs takes minutes; every process of a run (the server, each
Ray actor) needs the same arrays. The first load decodes once and writes the
arrays under a folder named by a hash of the inputs (the sorted file list with
sizes and modification times, plus the reader's options), so any later load,
in any process, maps them read-only in milliseconds and the OS shares the pages
between processes. A changed, added or removed input file changes the hash, so a
stale cache is never used. Writes go to a temporary folder renamed into place,
so a killed run leaves no half-written cache and concurrent first loads are safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fedcl.errors import DataError

CACHE_DIRNAME = ".fedcl_cache"
_DONE = "arrays.json"


def fingerprint(files: Iterable[Path], root: Path, **options: Any) -> str:
    """Hash of the files (relative path, size, mtime) and the options that shape the arrays."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    prefix = str(root).rstrip("/") + "/"
    for f in sorted(map(str, files)):  # strings, not pathlib: this runs on every load, in every process
        st = os.stat(f)
        rel = f[len(prefix):] if f.startswith(prefix) else f
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cache_root(data_root: Path, cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``<data_root>/.fedcl_cache`` when writable, else ``~/.cache/fedcl``."""
    if cache_dir:
        return Path(cache_dir)
    local = data_root / CACHE_DIRNAME
    if os.access(local if local.exists() else data_root, os.W_OK):
        return local
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fedcl"


def load_cached(folder: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a complete cache folder, memory-mapped read-only; None when absent."""
    done = folder / _DONE
    if not done.is_file():
        return None
    try:
        names = json.loads(done.read_text())["arrays"]
        return {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in names}
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"the data cache {folder} is damaged ({exc}); delete that folder to rebuild it") from exc


def build_cached(
    folder: Path, build: Callable[[Callable[[str, tuple[int, ...], np.dtype], np.ndarray]], dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Run ``build(alloc)`` once, write its arrays to ``folder``, return them memory-mapped.

    ``alloc(name, shape, dtype)`` returns a writable ``.npy`` memory map to fill
    in place (a large decode never holds the data set in RAM); ``build`` returns
    a mapping of array names to those maps or to other arrays, and any JSON
    values under the key ``"meta"`` (stored alongside).
    """
    cached = load_cached(folder)
    if cached is not None:
        return cached
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        def alloc(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
            return np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

        out = build(alloc)
        meta = out.pop("meta", {})
        for name, arr in out.items():
            if isinstance(arr, np.memmap):
                arr.flush()
            else:
                np.save(tmp / f"{name}.npy", np.asarray(arr))
        (tmp / _DONE).write_text(json.dumps({"arrays": sorted(out), "meta": meta}))
        del out
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: theirs is as good as ours
            if load_cached(folder) is None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    result = load_cached(folder)
    assert result is not None
    return result


def cached_meta(folder: Path) -> dict[str, Any]:
    """The JSON values ``build`` stored under ``"meta"``."""
    return dict(json.loads((folder / _DONE).read_text()).get("meta", {}))
