"""Check a stream's data before a run: ``python -m simulations.data check stream=split_cifar100 stream.data_dir=...``.

Composes the config as a run would (same overrides), then reports what it
found for ``stream``: the files with their sizes and, where the original
release publishes one, whether their MD5 matches; the classes, the samples per
split and the image shape; the tasks the stream builds from them. Missing or
corrupt data give the reader's message (which file, what was expected) and exit
code 1; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from fedcl.errors import ConfigError, FedCLError

if TYPE_CHECKING:
    from fedcl.config.schema import Stream as StreamConfig

KNOWN_MD5: dict[str, str] = {}


def _known_md5() -> dict[str, str]:
    """Published MD5 of the original files, by file name."""
    if not KNOWN_MD5:
        from fedcl.data import cifar, svhn, tiny_imagenet

        for fmt in cifar.FORMATS.values():
            KNOWN_MD5.update(fmt.file_md5)
            KNOWN_MD5[fmt.archive] = fmt.archive_md5
        KNOWN_MD5.update(svhn.FILE_MD5)
        KNOWN_MD5[tiny_imagenet.ARCHIVE] = tiny_imagenet.ARCHIVE_MD5
    return KNOWN_MD5


def compose_config(overrides: list[str]) -> tuple[StreamConfig, int, int, str | None]:
    """The stream section, clients and seed of ``overrides`` (and a note when the rest of the config is refused).

    The data can be checked even when another section is wrong (a model that does not fit
    yet, say): then only the stream section is validated, and the note says why.
    """
    from fedcl.config import GROUPS, compose, compose_dict, validate_section
    from fedcl.config.schema import Stream
    from fedcl.data.catalog import check_stream

    try:
        cfg = compose(overrides)
        return cfg.stream, cfg.federation.num_clients, cfg.seed, None
    except ConfigError as exc:
        if exc.key == "overrides" or exc.key in GROUPS or exc.key.startswith("stream"):
            raise  # not composable at all (unknown option, bad syntax), or the stream itself is wrong
        note = f"the config validator refused it ({exc}); the data are checked anyway"
    raw = compose_dict(overrides)
    stream = validate_section(Stream, raw["stream"], "stream")
    check_stream(stream)
    return stream, int(raw["federation"]["num_clients"]), int(raw["seed"]), note


def _size(path: Path) -> str:
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and ".fedcl_cache" not in p.parts]
        return f"folder, {len(files)} files, {sum(p.stat().st_size for p in files) / 2**20:.1f} MiB"
    return f"{path.stat().st_size / 2**20:.1f} MiB" if path.stat().st_size >= 2**16 else f"{path.stat().st_size} B"


def _checksum(path: Path) -> str:
    from fedcl.data.images import md5_file

    want = _known_md5().get(path.name)
    if want is None or not path.is_file():
        return "no published checksum"
    got = md5_file(path)
    return "MD5 matches the original" if got == want else f"MD5 {got} differs from the original {want}"


def _idx_files(data_dir: str) -> list[Path]:
    from fedcl.data.idx import _ROLES, _find

    return [p for stems in _ROLES.values() if (p := _find(Path(data_dir), stems)) is not None]


def check(st: StreamConfig, num_clients: int, seed: int) -> list[str]:
    """Lines describing the stream's data; raises :class:`FedCLError` when it is missing or corrupt."""
    from fedcl.config.schema import IDX_DATASETS
    from fedcl.data.base import load_base
    from fedcl.data.streams import build_stream

    lines = [f"stream: dataset={st.dataset} data_dir={st.data_dir} scenario={st.scenario} num_tasks={st.num_tasks}"]
    base = load_base(st)
    if st.dataset in IDX_DATASETS:
        files = _idx_files(str(st.data_dir))
    else:
        files = base.data.files if base.data else []
    if files:
        lines.append("files:")
        lines += [f"  {f}  ({_size(f)}; {_checksum(f)})" for f in files]
    if base.data is not None:
        lines += [f"  note: {n}" for n in base.data.notes]
    names = base.class_names
    shown = (", ".join(names[:5]) + (", ..." if len(names) > 5 else "")) if names else "no names in this format"
    lines += [
        f"classes: {base.num_classes} ({shown})",
        f"samples: train {len(base.y_train)}, test {len(base.y_test)}; image shape {list(base.in_shape)} uint8",
        "per-channel normalisation: mean " + " / ".join(", ".join(f"{v:.4f}" for v in row) for row in base.mean)
        + "; std " + " / ".join(", ".join(f"{v:.4f}" for v in row) for row in base.std),
    ]
    stream = build_stream(st, num_clients, seed)
    info = stream.describe()
    lines.append(f"tasks ({info['num_tasks']}, {'one head per task' if info['multi_head'] else 'one shared head'}, "
                 f"{info['num_clients']} clients):")
    for t in info["tasks"]:
        cls = t["classes"]
        shown_cls = f"{cls[:6]}{' ...' if len(cls) > 6 else ''}"
        lines.append(f"  task {t['task_id']}: {len(cls)} classes {shown_cls}, train {t['train_samples']}, "
                     f"test {t['test_samples']}, per client {min(t['client_samples'])}..{max(t['client_samples'])}")
    if stream.augment:
        lines.append(f"augmentation (clients' train data only): {stream.augment}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.data", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["check"], help="check: report what the stream's data folder holds")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for simulations.run")
    args = parser.parse_args(argv)
    try:
        stream_cfg, num_clients, seed, note = compose_config(args.overrides)
    except FedCLError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if note:
        print(f"note: {note}")
    try:
        with warnings.catch_warnings():  # a non-original archive warns; check() lists it among the notes
            warnings.simplefilter("ignore", UserWarning)
            lines = check(stream_cfg, num_clients, seed)
    except FedCLError as exc:
        print(f"data problem: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    print("OK: the stream can be built from these files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
