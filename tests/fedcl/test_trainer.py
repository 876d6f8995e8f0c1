"""Local training: device choice and FedProx's proximal term on the client."""

from __future__ import annotations

import pytest
import torch

from fedcl.errors import ConfigError
from fedcl.methods import build_method
from fedcl.methods.base import TaskContext
from fedcl.trainer import TrainConfig, pick_device, train_local
from tests.fedcl.methods.toy import NUM_CLASSES, make_model, toy_task


def test_pick_device() -> None:
    # auto follows what is visible; an explicit device must exist; anything else is refused
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            pick_device("cuda:0")
    with pytest.raises(ConfigError, match="'auto', 'cpu'"):
        pick_device("tpu")


def _drift(mu: float) -> float:
    """Distance from the global weights after one local round with proximal coefficient ``mu``."""
    model = make_model(0)
    x, y = toy_task(0, 200, 0)
    ctx = TaskContext(
        model=model, task_id=0, client_id=0, server_round=1, task_round=0, last_round_of_task=False, x=x, y=y,
        device=torch.device("cpu"), num_classes=NUM_CLASSES, task_classes=[0, 1], seen_tasks=[0],
        global_params={k: v.detach().clone() for k, v in model.named_parameters()},
        generator=torch.Generator().manual_seed(0),
    )
    start = dict(ctx.global_params)
    train_local(build_method({"naive": {}}), ctx, TrainConfig(lr=0.1, local_epochs=5, batch_size=20, momentum=0.0,
                                                                 weight_decay=0.0, proximal_mu=mu))
    with torch.no_grad():
        return float(sum(((p - start[k]) ** 2).sum() for k, p in model.named_parameters()).sqrt())


def test_proximal_term_keeps_the_client_near_the_global_model() -> None:
    # Execute: the same data, seed and steps with mu = 0, 1 and 10
    d0, d1, d10 = _drift(0.0), _drift(1.0), _drift(10.0)
    # Assert: FedProx pulls the local weights towards the global ones, more as mu grows
    assert d10 < d1 < d0
    assert d10 < 0.5 * d0
