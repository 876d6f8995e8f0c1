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
