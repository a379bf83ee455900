"""groupnorm: Group Normalization (Wu & He, 2018) for PyTorch.

Example::

    >>> import torch, groupnorm
    >>> y = groupnorm.group_norm(torch.randn(2, 64, 8, 8), 32, activation="silu")
"""

import importlib
from typing import Any

from groupnorm import models
from groupnorm._version import __version__
from groupnorm.convert import ConversionSummary, convert_norms
from groupnorm.functional import group_norm
from groupnorm.layers import (
    DistributedGroupNorm,
    GroupingWarning,
    GroupNorm,
    WSConv2d,
    describe_norms,
    known_norms,
    norm_layer,
    register_norm,
)
from groupnorm.patch import PatchReport, patch
from groupnorm.reference import group_norm_ref
from groupnorm.stats import (
    BackwardSums,
    GroupStats,
    PartGradients,
    group_norm_backward_sums,
    group_norm_part_backward,
    group_stats,
)
from groupnorm.tiled import tiled_decode

__all__ = [
    "__version__",
    "group_norm",
    "group_norm_ref",
    "GroupNorm",
    "DistributedGroupNorm",
    "GroupingWarning",
    "WSConv2d",
    "describe_norms",
    "known_norms",
    "norm_layer",
    "register_norm",
    "ConversionSummary",
    "convert_norms",
    "patch",
    "PatchReport",
    "models",
    "GroupStats",
    "group_stats",
    "BackwardSums",
    "PartGradients",
    "group_norm_backward_sums",
    "group_norm_part_backward",
    "tiled_decode",
]

# Public submodules loaded on first attribute access (PEP 562), so that ``import groupnorm; groupnorm.export.to_onnx``
# works as the README writes it without every ``import groupnorm`` paying for them.
_LAZY_SUBMODULES = ("export", "testing")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        # import_module binds the submodule as an attribute of this package, so later accesses skip this hook.
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
