"""ResNets with a pluggable norm and convolution, as Group Normalization's experiments train them.

ImageNet-style ``resnet18/34/50/101`` (:mod:`groupnorm.models.resnet`, 224x224 inputs, 1000 classes) and
CIFAR-style ``resnet20/32/56/110`` (:mod:`groupnorm.models.cifar_resnet`, 32x32 inputs, 10 classes, ``width=``).
Every model takes ``num_classes``, ``norm`` (kind name or ``channels -> module`` callable), ``conv``
(``nn.Conv2d`` or :class:`groupnorm.WSConv2d`), ``zero_init_last=True`` and ``fuse=True``.

Example::

    >>> import groupnorm
    >>> model = groupnorm.models.get_model("resnet56", norm="gn", width=2, num_classes=100)
    >>> groupnorm.models.list_models()
    ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet20', 'resnet32', 'resnet56', 'resnet110')
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from groupnorm.layers.describe import NormInfo, describe_norms, summarize_grouping
from groupnorm.models.blocks import BasicBlock, Bottleneck
from groupnorm.models.cifar_resnet import (
    CifarResNet,
    ZeroPadShortcut,
    resnet20,
    resnet32,
    resnet56,
    resnet110,
)
from groupnorm.models.resnet import ResNet, resnet18, resnet34, resnet50, resnet101

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "resnet110": resnet110,
}


def list_models() -> tuple[str, ...]:
    """The names :func:`get_model` knows."""
    return tuple(MODELS)


def get_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model called ``name`` with ``kwargs`` (``num_classes``, ``norm``, ``conv``, ``width``, ...)."""
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model name={name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = [
    "MODELS",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "NormInfo",
    "ResNet",
    "ZeroPadShortcut",
    "describe_norms",
    "get_model",
    "list_models",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet110",
    "summarize_grouping",
]
