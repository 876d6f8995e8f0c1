"""Flower records from tensors and arrays: the one way weights and statistics become an ``ArrayRecord``."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict


def array_record(values: Mapping[str, torch.Tensor | np.ndarray], dtype: np.dtype | type | None = None) -> ArrayRecord:
    """An ``ArrayRecord`` of tensors (moved to the CPU) or arrays, C-contiguous, optionally cast to ``dtype``."""
    out = {}
    for k, v in values.items():
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        out[k] = Array(np.ascontiguousarray(a if dtype is None else a.astype(dtype, copy=False)))
    return ArrayRecord(out)


def model_record(model: torch.nn.Module) -> ArrayRecord:
    """A model's ``state_dict()`` as an ``ArrayRecord`` (what travels as the global / local weights)."""
    return array_record(model.state_dict())


def non_finite_arrays(record: ArrayRecord) -> list[str]:
    """Names of the float arrays of ``record`` holding NaN or Inf."""
    bad = []
    for name, arr in record.items():
        x = arr.numpy()
        if np.issubdtype(x.dtype, np.inexact) and not np.isfinite(x).all():
            bad.append(name)
    return bad


def non_finite_metrics(record: MetricRecord) -> list[str]:
    """Names of the metrics of ``record`` that are NaN or Inf."""
    bad = []
    for name, v in record.items():
        vals = v if isinstance(v, list) else [v]
        if any(isinstance(x, float) and not math.isfinite(x) for x in vals):
            bad.append(name)
    return bad


def non_finite_reason(content: RecordDict) -> str | None:
    """Which record of a reply holds NaN or Inf (and where), or ``None`` when every value is finite.

    One NaN summed into a global model, a sketch or a Fisher sum poisons everything after it.
    """
    for name in content.keys():
        rec = content[name]
        bad = (non_finite_arrays(rec) if isinstance(rec, ArrayRecord)
               else non_finite_metrics(rec) if isinstance(rec, MetricRecord) else [])
        if bad:
            return f"NaN/Inf in record '{name}' {bad[:3]}"
    return None
