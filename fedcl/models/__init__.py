"""Plain ``nn.Module`` models; ``model=mlp`` is ``simulations/conf/model/mlp.yaml`` is class ``MLP``."""

from __future__ import annotations

from torch import nn

from fedcl.config.schema import ModelConfig
from fedcl.models.alexnet import AlexNet
from fedcl.models.convnet import ConvNet
from fedcl.models.heads import Heads
from fedcl.models.mlp import MLP
from fedcl.models.resnet18_reduced import ResNet18Reduced
from fedcl.registry import Registry

MODELS: Registry[nn.Module] = Registry("model.name", {
    "mlp": "fedcl.models.mlp:MLP",
    "convnet": "fedcl.models.convnet:ConvNet",
    "alexnet": "fedcl.models.alexnet:AlexNet",
    "resnet18_reduced": "fedcl.models.resnet18_reduced:ResNet18Reduced",
})


def build_model(model: ModelConfig, in_shape: tuple[int, ...], num_classes: int, num_heads: int = 1) -> nn.Module:
    """The model of a validated ``model`` group (its ``name`` and options) for a stream's shape."""
    options = model.model_dump(exclude={"name"})
    return MODELS.get(model.name)(in_shape, num_classes, num_heads=num_heads, **options)


__all__ = ["MLP", "MODELS", "AlexNet", "ConvNet", "Heads", "ResNet18Reduced", "build_model"]
