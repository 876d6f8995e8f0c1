"""Models: output shapes, heads, what FOT/GPM may project, and config errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedcl.config import validate_section
from fedcl.config.schema import Model
from fedcl.errors import ConfigError
from fedcl.models import build_model
from fedcl.subspace import projectable_layers


@pytest.mark.parametrize("cfg", [{"name": "mlp", "hidden": [16, 8], "dropout": 0.0},
                                 {"name": "convnet", "channels": [4, 8], "hidden": 16, "dropout": 0.0}])
def test_single_head_output_shape_and_projectable_layers(cfg: dict) -> None:
    # Prepare
    model = build_model(validate_section(Model, cfg, "model"), (1, 8, 8), num_classes=5)
    # Execute
    out = model(torch.randn(3, 1, 8, 8))
    # Assert: logits for every class; every weight layer (the shared head included) is projectable
    assert out.shape == (3, 5)
    layers = projectable_layers(model)
    expected = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())
    assert len(layers) == expected and "head.heads.0" in layers
    if cfg["name"] == "convnet":  # bias-free convs: FOT's projection of conv weights is exact
        assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_multi_head_routes_by_task_and_keeps_heads_out_of_projection() -> None:
    # Prepare: 3 task heads
    model = build_model(validate_section(Model, {"name": "mlp", "hidden": [16], "dropout": 0.0}, "model"),
                        (1, 8, 8), num_classes=4, num_heads=3)
    x = torch.randn(2, 1, 8, 8)
    # Execute
    outs = [model(x, task_id=t) for t in range(3)]
    # Assert: each task has its own head (different outputs), the task id is required, heads not projected
    assert all(o.shape == (2, 4) for o in outs) and not torch.equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="task id"):
        model(x)
    assert not any(name.startswith("head.") for name in projectable_layers(model))


def test_bad_model_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match="model.name"):
        validate_section(Model, {"name": "resnet"}, "model")
    with pytest.raises(ConfigError, match="model.width"):
        validate_section(Model, {"name": "mlp", "hidden": [16], "dropout": 0.0, "width": 3}, "model")


def test_mlp_takes_one_dropout_rate_per_hidden_layer() -> None:
    from fedcl.config import compose
    from fedcl.models import MLP

    # Prepare / Execute
    model = MLP((6,), 3, hidden=[8, 8, 8], dropout=[0.2, 0.5, 0.5])
    single = MLP((6,), 3, hidden=[8, 8], dropout=0.3)
    # Assert: one Dropout after each hidden layer with its own rate; a single number applies to all
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.2, 0.5, 0.5]
    assert [m.p for m in single.modules() if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3]
    with pytest.raises(ConfigError, match="model.dropout.*one rate per hidden layer"):
        compose(["model.hidden=[8,8]", "model.dropout=[0.2,0.5,0.5]"])
