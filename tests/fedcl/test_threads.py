"""Torch threads of a Ray actor follow the CPUs Ray assigned to it; outside Ray nothing changes."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from fedcl import threads


def fake_ray(cpus: float) -> types.ModuleType:
    ctx = types.SimpleNamespace(get_assigned_resources=lambda: {"CPU": cpus})
    mod = types.ModuleType("ray")
    mod.is_initialized = lambda: True  # type: ignore[attr-defined]
    mod.get_runtime_context = lambda: ctx  # type: ignore[attr-defined]
    return mod


@pytest.mark.parametrize(("cpus", "expected"), [(1.0, 1), (0.5, 1), (2.7, 2)])
def test_threads_match_the_ray_cpu_share(monkeypatch: pytest.MonkeyPatch, cpus: float, expected: int) -> None:
    # Prepare: a Ray worker that was given `cpus` CPUs
    before = torch.get_num_threads()
    monkeypatch.setitem(sys.modules, "ray", fake_ray(cpus))
    monkeypatch.setattr(threads, "_done", [])
    try:
        # Execute
        n = threads.match_torch_threads()
        # Assert
        assert n == expected == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_outside_ray_torch_keeps_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(threads, "_done", [])
    assert threads.match_torch_threads() == before == torch.get_num_threads()
