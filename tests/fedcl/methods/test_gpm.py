"""GPM: bases from layer inputs, orthogonal gradients, forgetting, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedcl.methods.base import TaskContext
from fedcl.methods.gpm import GPM
from fedcl.methods.naive import Naive
from fedcl.models import MLP
from tests.fedcl.methods.test_ema import assert_state_equal
from tests.fedcl.methods.toy import run_two_tasks


def _ctx(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TaskContext:
    return TaskContext(
        model=model,
        task_id=0,
        client_id=0,
        server_round=1,
        task_round=0,
        last_round_of_task=True,
        x=x,
        y=y,
        device=torch.device("cpu"),
        num_classes=3,
        task_classes=[0, 1, 2],
        seen_tasks=[0],
        global_params={},
        generator=torch.Generator().manual_seed(0),
    )


def test_bases_capture_inputs_and_gradients_become_orthogonal() -> None:
    torch.manual_seed(0)
    model = MLP((6,), 3, hidden=[8])
    # task-0 inputs live in a 2-d subspace of R^6: the first layer's basis must span it
    x = torch.randn(50, 2) @ torch.randn(2, 6)
    method = GPM(threshold=0.99, threshold_increment=0.0)
    method.after_task(_ctx(model, x, torch.randint(0, 3, (50,))))
    restored = GPM(threshold=0.99, threshold_increment=0.0)
    restored.load_state_dict(method.state_dict())
    U = restored.bases["body.1"]
    assert U.shape == (6, 2)
    assert torch.allclose(U.T @ U, torch.eye(2), atol=1e-5)
    assert torch.allclose(x.T - U @ (U.T @ x.T), torch.zeros(6, 50), atol=1e-4)

    loss = F.cross_entropy(model(torch.randn(16, 6)), torch.randint(0, 3, (16,)))
    loss.backward()
    restored.after_backward(_ctx(model, x, torch.zeros(50, dtype=torch.long)))
    first = model.body[1]
    assert isinstance(first, nn.Linear) and first.weight.grad is not None and first.bias.grad is not None
    assert torch.allclose(first.weight.grad @ U, torch.zeros(8, 2), atol=1e-6)
    assert torch.count_nonzero(first.bias.grad) == 0
    # a step along the projected gradient leaves the layer's response to task-0 inputs unchanged
    before = first(x).detach()
    with torch.no_grad():
        first.weight -= 0.5 * first.weight.grad
    assert torch.allclose(first(x), before, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_gpm_forgets_less_than_naive(seed: int) -> None:
    naive = run_two_tasks(Naive, seed=seed)
    gpm = run_two_tasks(lambda: GPM(threshold=0.9, threshold_increment=0.0), seed=seed)
    assert gpm.forgetting < naive.forgetting - 0.3
    assert gpm.acc1_after_task1 > 0.7


def test_gpm_state_round_trip() -> None:
    torch.manual_seed(0)
    model = MLP((6,), 3, hidden=[8])
    method = GPM()
    method.after_task(_ctx(model, torch.randn(40, 6), torch.randint(0, 3, (40,))))
    state = method.state_dict()
    restored = GPM()
    restored.load_state_dict(state)
    assert_state_equal(restored.state_dict(), state)
    assert restored.tasks_done == 1 and set(state["bases"]) == {"body.1", "head.heads.0"}


def test_threshold_grows_per_task_and_is_capped_and_validated() -> None:
    method = GPM(threshold=0.9, threshold_increment=0.05)
    assert method.current_threshold() == pytest.approx(0.9)
    method.tasks_done = 2
    assert method.current_threshold() == pytest.approx(1.0 - 1e-4)  # 1.0 capped below 1
    method.tasks_done = 1
    assert method.current_threshold() == pytest.approx(0.95)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="threshold"):
            GPM(threshold=bad)


def test_basis_by_hand_and_bias_left_free_without_freeze_bias() -> None:
    # Prepare: task inputs with energy 0.9 along e_0 and 0.1 along e_1 (4 samples of R^3)
    model = nn.Sequential(nn.Linear(3, 2))
    x = torch.tensor([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    ctx = _ctx(model, x, torch.zeros(4, dtype=torch.long))
    # Execute: threshold 0.85 -> e_0 alone explains 0.9 > 0.85
    method = GPM(threshold=0.85, threshold_increment=0.1, freeze_bias=False)
    method.after_task(ctx)
    # Assert
    U = method.bases["0"]
    assert U.shape == (3, 1) and ctx.metrics["gpm-basis-dims"] == 1.0 and method.tasks_done == 1
    torch.testing.assert_close(U.abs(), torch.tensor([[1.0], [0.0], [0.0]]))
    # second task, same inputs, threshold 0.95: the residual (e_1, ratio 0.1) must be added
    method.after_task(ctx)
    assert method.bases["0"].shape == (3, 2)
    model(torch.randn(5, 3)).sum().backward()
    method.after_backward(ctx)
    layer = model[0]
    assert layer.bias.grad is not None and torch.count_nonzero(layer.bias.grad) == 2  # not frozen
    assert torch.allclose(layer.weight.grad[:, :2], torch.zeros(2, 2), atol=1e-6)


def test_zero_inputs_add_no_basis() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    method = GPM()
    method.after_task(_ctx(model, torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)))
    assert method.bases == {}
    method.after_backward(_ctx(model, torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)))  # nothing to project


def test_freeze_bias_zeroes_only_the_biases_of_layers_with_a_basis() -> None:
    # Prepare: a basis for the first layer only; a bias-free last layer
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 2, bias=False))
    method = GPM()
    method.bases = {"0": torch.eye(3)[:, :1]}
    model(torch.randn(5, 3)).pow(2).sum().backward()
    free_bias = model[2].bias.grad.clone()
    # Execute
    method.after_backward(_ctx(model, torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)))
    # Assert: an old task's layer cannot shift its outputs; the other layers' biases learn as before
    assert torch.count_nonzero(model[0].bias.grad) == 0
    assert torch.count_nonzero(free_bias) > 0 and torch.equal(model[2].bias.grad, free_bias)
