"""A two-task task-incremental (multi-head) toy stream and one-client driver.

Both tasks share the input distribution ``x ~ N(0, I)``: task ``t`` labels ``x_t > 0``
(classes ``2t, 2t + 1``) on its own head. With a two-unit hidden layer the body cannot
keep both features unless something protects the first, so naive fine-tuning forgets
task 0 even though each task has its own head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fedcl.methods.base import CLMethod
from fedcl.models import MLP
from tests.fedcl.methods.toy import ToyResult, run_two_tasks

DIM = 8
NUM_CLASSES = 4


def mh_task(task_id: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 10 + task_id)
    x = torch.randn(n, DIM, generator=g)
    return x, (x[:, task_id] > 0).long() + 2 * task_id


def run_two_tasks_multi_head(
    make_method: Callable[[], CLMethod],
    seed: int = 0,
    rounds_per_task: int = 3,
    epochs: int = 2,
    lr: float = 0.1,
    n: int = 400,
    hidden: int = 2,
) -> ToyResult:
    """``toy.run_two_tasks`` (method rebuilt every round) on the two-head stream."""
    torch.manual_seed(seed)
    model = MLP((DIM,), NUM_CLASSES, hidden=[hidden], num_heads=2)
    return run_two_tasks(
        make_method, seed, rounds_per_task, epochs, lr, n, model=model, task_fn=mh_task, multi_head=True
    )
