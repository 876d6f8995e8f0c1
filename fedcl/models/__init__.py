"""Plain ``nn.Module`` models; ``build_model`` maps the ``model`` config group to one."""

from __future__ import annotations

from typing import Any

from torch import nn

from fedcl.errors import ConfigError
from fedcl.models.alexnet import AlexNet
from fedcl.models.convnet import ConvNet
from fedcl.models.heads import Heads
from fedcl.models.mlp import MLP
from fedcl.models.resnet18_reduced import ResNet18Reduced

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP, "convnet": ConvNet, "alexnet": AlexNet, "resnet18_reduced": ResNet18Reduced,
}


def build_model(
    cfg: dict[str, Any], in_shape: tuple[int, ...], num_classes: int, num_heads: int = 1
) -> nn.Module:
    """Build the model named ``cfg['name']`` with the remaining keys as arguments."""
    params = {k: v for k, v in cfg.items() if k != "name"}
    name = cfg.get("name")
    if name not in MODELS:
        raise ConfigError("model.name", name, f"choose one of {sorted(MODELS)}")
    try:
        return MODELS[name](in_shape, num_classes, num_heads=num_heads, **params)
    except TypeError as exc:
        raise ConfigError(f"model ({name})", params, f"unknown parameter: {exc}") from exc


__all__ = ["MLP", "AlexNet", "ConvNet", "Heads", "MODELS", "ResNet18Reduced", "build_model"]
