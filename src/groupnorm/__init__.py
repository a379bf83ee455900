"""groupnorm: Group Normalization (Wu & He, 2018) for PyTorch.

Example::

    >>> import torch, groupnorm
    >>> y = groupnorm.group_norm(torch.randn(2, 64, 8, 8), 32, activation="silu")
"""

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
