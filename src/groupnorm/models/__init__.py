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

import re
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
    """The names :func:`get_model` knows by name (any CIFAR depth ``resnet<6n+2>`` is taken too)."""
    return tuple(MODELS)


# ImageNet ResNet depths (torchvision's and timm's names) that a CIFAR depth rule must not take
IMAGENET_DEPTHS = frozenset({18, 26, 34, 38, 50, 101, 152, 200})


def cifar_depth(name: str) -> int | None:
    """The depth of a CIFAR-style ResNet name (``resnet20``, and any 6n + 2 below 200 such as ``resnet8``), else
    None (the ImageNet ResNets: ``resnet50`` is 6n + 2 too).

    Example::

        >>> cifar_depth("resnet8"), cifar_depth("resnet44"), cifar_depth("resnet50"), cifar_depth("resnet152")
        (8, 44, None, None)
    """
    if name in MODELS and not MODELS[name].__module__.endswith("cifar_resnet"):
        return None
    m = re.fullmatch(r"resnet([1-9]\d*)", name)
    depth = int(m.group(1)) if m else 0
    if depth in IMAGENET_DEPTHS or (depth - 2) % 6 != 0 or not 8 <= depth < 200:
        return None  # not a CIFAR depth, or the name of an ImageNet ResNet (resnet26/38/152: 6n + 2 as well)
    return depth


def get_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model called ``name`` with ``kwargs`` (``num_classes``, ``norm``, ``conv``, ``width``, ...): a name
    of :func:`list_models`, or a CIFAR-style ``resnet<6n+2>`` of any depth (``resnet8``, which the CPU presets
    of ``groupnorm repro`` train, ``resnet14``, ``resnet44``)."""
    if isinstance(name, str) and name in MODELS:
        return MODELS[name](**kwargs)
    depth = cifar_depth(name) if isinstance(name, str) else None
    if depth is None:
        raise ValueError(
            f"unknown model name={name!r}; known models: {', '.join(MODELS)}, or resnet<6n+2> (CIFAR-style)"
        )
    kwargs.setdefault("num_classes", 10)
    return CifarResNet(depth, **kwargs)  # type: ignore[arg-type]


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
