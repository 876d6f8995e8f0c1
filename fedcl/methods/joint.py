"""Joint (cumulative) training: the upper bound of every continual-learning method."""

from __future__ import annotations

import torch

from fedcl.methods.base import CLMethod, TaskContext


class Joint(CLMethod):
    """Train on the union of every task the client has seen so far (no forgetting by construction).

    The upper bound used in continual-learning benchmarks: Avalanche's ``Cumulative``
    strategy (each experience trains on the concatenation of every experience seen so
    far) and the "joint" rows of Mammoth. Every round's epochs run over the client's
    data of all its seen tasks, the current one included (``train_data``), shuffled
    together; earlier tasks' data is re-derived from the stream (``ctx.task_data``),
    so nothing is stored and the state is empty. On a multi-head (task-incremental)
    model each sample is trained through its own task's head, masked to that task's
    classes, so every head keeps learning its own task. A round therefore costs as many
    steps as the union has batches, and the client's FedAvg weight is the union's size.
    Not a continual method: it breaks the rule that past data is gone, which is the
    point of an upper bound.

    Parameters
    ----------
    None
    """

    name = "joint"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def train_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        earlier = [t for t in ctx.seen_tasks if t != ctx.task_id]
        if not earlier:
            return None  # first task: the union is the current task
        if ctx.task_data is None:
            raise ValueError("joint: the client gave no ctx.task_data, so earlier tasks' data cannot be re-derived")
        xs, ys, ts = [ctx.x], [ctx.y], [torch.full_like(ctx.y, ctx.task_id)]
        for t in earlier:
            x, y = ctx.task_data(t)
            xs.append(x.to(ctx.x.device))
            ys.append(y.to(ctx.y.device))
            ts.append(torch.full_like(ys[-1], t))
        return torch.cat(xs), torch.cat(ys), torch.cat(ts)
