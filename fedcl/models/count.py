"""Parameter counts of the papers' networks: ``python -m fedcl.models.count alexnet resnet18_reduced``.

For each named model, every set-up of the papers it is used in: the input
shape, tasks x classes per task of the authors' heads (one head of
``classes per task`` outputs per task, labels local to the task) and the
model arguments. fedcl's own task-incremental heads have one output per class
of the whole stream (other tasks' outputs masked), so its head counts are
printed too. ``tests/fedcl/models/test_paper_models.py`` pins the authors'
totals to counts of transcriptions of their code.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from fedcl.models import MODELS


@dataclass(frozen=True)
class Setup:
    """One paper set-up of a model."""

    model: str
    label: str
    in_shape: tuple[int, int, int]
    tasks: int
    classes_per_task: int
    params: dict[str, Any] = field(default_factory=dict)


SETUPS = (
    Setup("alexnet", "FOT Split CIFAR-100 (model/alexnet.py)", (3, 32, 32), 10, 10),
    Setup("alexnet", "GPM Split CIFAR-100 (main_cifar100.py, batch norm)", (3, 32, 32), 10, 10,
          {"batch_norm": True}),
    Setup("resnet18_reduced", "FOT 5-Datasets (model/resnet.py)", (3, 32, 32), 5, 10, {"nf": 20}),
    Setup("resnet18_reduced", "GPM 5-Datasets (main_five_dataset.py, batch norm)", (3, 32, 32), 5, 10,
          {"nf": 20, "batch_norm": True}),
    Setup("resnet18_reduced", "FOT mini-ImageNet (model/resnet_imagenet.py)", (3, 84, 84), 20, 5,
          {"nf": 32, "stem_stride": 2, "batch_norm": True}),
)


def count(model: nn.Module) -> tuple[int, int]:
    """(parameters outside the task heads, parameters of the heads)."""
    head = getattr(model, "head", None)
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    body = sum(p.numel() for p in model.parameters() if id(p) not in head_ids)
    return body, sum(p.numel() for p in model.parameters() if id(p) in head_ids)


def build(setup: Setup, num_classes: int) -> nn.Module:
    """The set-up's network with ``tasks`` heads of ``num_classes`` outputs."""
    return MODELS.get(setup.model)(setup.in_shape, num_classes, num_heads=setup.tasks, **setup.params)


def authors_count(setup: Setup) -> int:
    """Total parameters with the authors' heads: ``tasks`` heads of ``classes_per_task`` outputs."""
    return sum(count(build(setup, setup.classes_per_task)))


def rows(names: list[str]) -> list[list[str]]:
    out = []
    for s in SETUPS:
        if s.model not in names:
            continue
        body, heads = count(build(s, s.classes_per_task))
        _, fedcl_heads = count(build(s, s.tasks * s.classes_per_task))
        args = ", ".join(f"{k}={v}" for k, v in s.params.items()) or "defaults"
        out.append([s.model, s.label, "x".join(map(str, s.in_shape)), f"{s.tasks}x{s.classes_per_task}", args,
                    f"{body:,}", f"{heads:,}", f"{body + heads:,}", f"{body + fedcl_heads:,}"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedcl.models.count", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["alexnet", "resnet18_reduced"],
                        help=f"model names among {sorted({s.model for s in SETUPS})}")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in {s.model for s in SETUPS}]
    if unknown:
        known = MODELS.names()
        parser.error(f"no paper set-up for {unknown}; models: {known}, "
                     f"with set-ups: {sorted({s.model for s in SETUPS})}")
    header = ["model", "set-up", "input", "heads", "arguments", "body", "heads (authors')", "total (authors')",
              "total (fedcl heads)"]
    table = [header, *rows(args.models)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.rjust(w) if i >= 5 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
