"""Modules: the drop-in ``GroupNorm``, ``DistributedGroupNorm`` (inputs split over ranks), ``WSConv2d`` (Weight
Standardization) and the ``norm_layer`` registry."""

from groupnorm.layers.describe import NormInfo, describe_norms
from groupnorm.layers.distributed import DistributedGroupNorm
from groupnorm.layers.group_norm import GroupNorm
from groupnorm.layers.grouping import GroupChange, GroupChoice, auto_num_groups, resolve_groups
from groupnorm.layers.norm_registry import (
    BatchNormNd,
    GroupingWarning,
    NormLayer,
    as_norm_layer,
    known_norms,
    norm_layer,
    register_norm,
)
from groupnorm.layers.weight_standardization import WSConv2d, standardize_weight

__all__ = [
    "BatchNormNd",
    "DistributedGroupNorm",
    "GroupChange",
    "GroupChoice",
    "GroupNorm",
    "GroupingWarning",
    "NormInfo",
    "NormLayer",
    "WSConv2d",
    "as_norm_layer",
    "auto_num_groups",
    "describe_norms",
    "known_norms",
    "norm_layer",
    "register_norm",
    "resolve_groups",
    "standardize_weight",
]
