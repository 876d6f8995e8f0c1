"""Central evaluation of the global model on every task's test data (fixed subsets every round, full at task ends)."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord

from fedcl.data import Stream
from fedcl.trainer import evaluate


class CentralEvaluator:
    """Evaluates the global model on cached per-task test data (subsets every round).

    Parameters
    ----------
    stream : Stream
        The task stream (the server's copy of the test splits).
    model : torch.nn.Module
        A model instance the global weights are loaded into.
    subset_size : int | None
        Size of the fixed per-task evaluation subset used every round.
    batch_size : int
        Evaluation batch size.
    """

    def __init__(self, stream: Stream, model: torch.nn.Module, subset_size: int | None, batch_size: int) -> None:
        self.stream, self.model = stream, model
        self.subset_size, self.batch_size = subset_size, batch_size
        self.device = next(model.parameters()).device
        self._subsets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def load(self, arrays: ArrayRecord) -> None:
        """Put the global weights into the evaluation model."""
        self.model.load_state_dict(arrays.to_torch_state_dict())

    def _eval(self, task: int, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
        classes = self.stream.tasks[task].classes if self.stream.multi_head else None
        return evaluate(self.model, *data, task_id=task, multi_head=self.stream.multi_head,
                        task_classes=classes, batch_size=self.batch_size, device=self.device)

    def per_round(self, tasks: list[int]) -> tuple[dict[int, float], dict[int, float]]:
        """Accuracy and loss on each task's fixed evaluation subset."""
        accs, losses = {}, {}
        for t in tasks:
            if t not in self._subsets:
                x, y = self.stream.eval_data(t, self.subset_size)
                self._subsets[t] = (x.to(self.device), y.to(self.device))
            losses[t], accs[t] = self._eval(t, self._subsets[t])
        return accs, losses

    def full(self) -> list[float]:
        """Accuracy on the full test split of every task (one accuracy-matrix row)."""
        return [self._eval(t, self.stream.eval_data(t, None))[1] for t in range(len(self.stream.tasks))]
