"""The method protocol (no-op hooks, purge of stored classes, state size) and the method registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fedcl.methods
from fedcl.config import compose
from fedcl.errors import ConfigError
from fedcl.methods import METHODS, Composite, build_method
from fedcl.methods._buffer import ReservoirBuffer
from fedcl.methods.base import CLMethod, state_nbytes
from fedcl.methods.er import ER
from tests.conftest import synthetic_overrides
from tests.fedcl.methods.toy import make_ctx, make_model, toy_task


def test_registry_lists_every_method_file_and_builds_with_params() -> None:
    # Prepare: every public one-method file of fedcl/methods/
    files = {p.stem for p in Path(fedcl.methods.__file__).parent.glob("*.py")}
    expected = files - {"__init__", "base", "compose"} - {f for f in files if f.startswith("_")}
    # Execute
    names = METHODS.names()
    method = build_method({"er": {"buffer_size": 7}})
    # Assert: every file is a method; the variants of one paper (k-FPF, k-FPF-KD) live in their base's file
    variants = {"kfpf": "fpf", "kfpf_kd": "fpf"}
    assert set(names) - set(variants) == expected and names == sorted(names)
    assert all(METHODS.get(v).__module__ == f"fedcl.methods.{base}" for v, base in variants.items())
    assert METHODS.get("er") is ER
    assert isinstance(method, ER) and method.buffer_size == 7
    assert isinstance(build_method({"naive": {}}), CLMethod)


def test_registry_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="did you mean 'er'.*choose one of"):
        METHODS.get("err")
    with pytest.raises(ConfigError, match="bogus"):
        compose(synthetic_overrides("method=er", "+method.er.bogus=1"))


def test_default_hooks_change_nothing() -> None:
    model = make_model(0)
    x, y = toy_task(0, 4, seed=0)
    ctx = make_ctx(model, 0, x, y)
    method = CLMethod()
    bx, by = method.adapt_batch(x, y, ctx)
    assert bx is x and by is y
    base = torch.tensor(2.0)
    assert method.loss(torch.zeros(1), y, base, ctx) is base
    for hook in (method.before_task, method.after_backward, method.after_round, method.after_task):
        assert hook(ctx) is None
    assert method.state_dict() == {} and method.load_state_dict({}) is None
    assert method.forget_classes([0]) == 0


def test_forget_classes_purges_nested_buffers() -> None:
    er = ER(buffer_size=10)
    method = build_method({"er": {}, "ewc": {}})
    assert isinstance(method, Composite)
    method.parts["er"] = er
    x, y = toy_task(0, 6, seed=0)
    er.buffer.add(x, y, torch.zeros_like(y))
    zeros = int((y == 0).sum())
    assert method.forget_classes([0]) == zeros
    assert er.buffer.y is not None and 0 not in er.buffer.y.tolist()


def test_state_nbytes_counts_tensors_and_arrays_recursively() -> None:
    state = {"a": torch.zeros(3, dtype=torch.float32), "b": [torch.zeros(2, dtype=torch.float64), (np.zeros(4),)],
             "c": 5, "d": {"e": torch.zeros(1, dtype=torch.int8)}}
    assert state_nbytes(state) == 12 + 16 + 32 + 1
    assert state_nbytes("text") == 0


class _TwoBuffers(CLMethod):
    """Two buffers, an empty one, a nested method with its own buffer, and a plain attribute."""

    def __init__(self) -> None:
        self.first, self.second, self.empty = ReservoirBuffer(10), ReservoirBuffer(10), ReservoirBuffer(10)
        self.inner = ER(buffer_size=10)
        self.steps = 3


def _filled() -> tuple[_TwoBuffers, torch.Tensor, torch.Tensor]:
    x, y = toy_task(0, 12, seed=0)
    y = torch.tensor([0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1])
    method = _TwoBuffers()
    method.first.add(x[:2], y[:2], torch.zeros(2, dtype=torch.long))  # two of class 0
    method.second.add(x[2:6], y[2:6], torch.zeros(4, dtype=torch.long))  # three of class 0, one of class 1
    method.inner.buffer.add(x[6:9], y[6:9], torch.zeros(3, dtype=torch.long))  # one of class 0
    return method, x, y


def test_forget_classes_counts_every_buffer_and_nested_method() -> None:
    # Prepare
    method, _, _ = _filled()
    # Execute
    removed = method.forget_classes([0])
    # Assert: 2 + 3 + 1 rows of class 0 removed, none left anywhere
    assert removed == 6
    for buffer in (method.first, method.second, method.inner.buffer):
        assert buffer.y is None or 0 not in buffer.y.tolist()
    assert len(method.second) == 1 and len(method.inner.buffer) == 2


def test_forget_samples_removes_the_stored_copies_and_counts_them() -> None:
    # Prepare: forget one row of each buffer plus a row no buffer holds
    method, x, _ = _filled()
    forgotten = x[[1, 3, 7, 11]]
    # Execute
    removed = method.forget_samples(forgotten)
    # Assert
    assert removed == 3
    assert (len(method.first), len(method.second), len(method.inner.buffer), len(method.empty)) == (1, 3, 2, 0)
    for buffer in (method.first, method.second, method.inner.buffer):
        assert buffer.x is not None and not any(torch.equal(row, f) for row in buffer.x for f in forgotten)
    assert CLMethod().forget_samples(forgotten) == 0
