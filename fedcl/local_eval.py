"""Client-side evaluation for local forgetting (``eval.local_forgetting: true``).

After local training a client evaluates *its own* model (before averaging) on
every task it has trained so far, on the same fixed evaluation subsets the server
uses, so local and global accuracies are comparable. The result travels as one
extra ``MetricRecord`` (``keys.LOCAL_EVAL``) that the server takes out of the reply
before aggregation (:class:`fedcl.metrics.local.LocalForgetting`). Both halves read
and write the record only through this module.
"""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import MetricRecord

from fedcl.config.schema import Eval
from fedcl.data import Stream
from fedcl.trainer import evaluate

RECORD = "local-eval"  # client -> server MetricRecord: own model's accuracy on its tasks
CLIENT = "client-id"  # MetricRecord keys of the local-eval record
ACC_PREFIX = "acc-"  # "acc-<task id>": accuracy of the client's model on that task


def local_eval_record(
    model: torch.nn.Module, stream: Stream, tasks: list[int], client_id: int, eval_cfg: Eval, device: torch.device,
) -> MetricRecord:
    """Accuracy of the client's locally trained model on each of ``tasks`` (its past and current tasks).

    Parameters
    ----------
    model : torch.nn.Module
        The client's model right after local training.
    stream : Stream
        The task stream (test splits).
    tasks : list[int]
        The tasks this client has trained so far.
    client_id : int
        Logical client id (the server keys the record by it).
    eval_cfg : Eval
        The ``eval`` config section (``subset_size``, ``batch_size``).
    device : torch.device
        Where to evaluate.

    Returns
    -------
    MetricRecord
        ``client-id`` and ``acc-<t>`` for every task.
    """
    rec: dict[str, int | float | list[int] | list[float]] = {CLIENT: int(client_id)}
    subset = eval_cfg.subset_size
    for t in sorted(set(tasks)):
        x, y = stream.eval_data(t, subset)
        classes = list(stream.tasks[t].classes) if stream.multi_head else None
        _, acc = evaluate(model, x, y, task_id=t, multi_head=stream.multi_head, task_classes=classes,
                          batch_size=eval_cfg.batch_size, device=device)
        rec[f"{ACC_PREFIX}{t}"] = float(acc)
    return MetricRecord(rec)


def parse(rec: MetricRecord | dict[str, Any]) -> tuple[int, dict[int, float]]:
    """The client and its accuracy per task out of a local-eval record."""
    accs = {int(k[len(ACC_PREFIX):]): float(v) for k, v in rec.items() if k.startswith(ACC_PREFIX)}  # type: ignore[arg-type]
    return int(rec[CLIENT]), accs  # type: ignore[arg-type]
