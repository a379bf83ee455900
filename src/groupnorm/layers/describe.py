"""``describe_norms(model)``: every normalization layer of a model with the grouping it actually uses.

Experiments record this next to their results, so a reported number says which G each layer had.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from torch import nn

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


@dataclass(frozen=True)
class NormInfo:
    """One normalization layer; ``num_groups``/``group_size`` are None for batch statistics norms."""

    path: str
    type: str
    num_channels: int
    num_groups: int | None
    group_size: int | None
    eps: float
    affine: bool
    activation: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _info(path: str, m: nn.Module) -> NormInfo | None:
    name = type(m).__name__
    if isinstance(m, nn.GroupNorm):
        return NormInfo(
            path,
            name,
            m.num_channels,
            m.num_groups,
            m.num_channels // m.num_groups,
            m.eps,
            m.affine,
            getattr(m, "activation", None),
        )
    if isinstance(m, _BATCH_NORMS + _INSTANCE_NORMS):
        groups = m.num_features if isinstance(m, _INSTANCE_NORMS) else None
        return NormInfo(path, name, m.num_features, groups, None if groups is None else 1, m.eps, m.affine)
    if isinstance(m, nn.LayerNorm):
        return NormInfo(path, name, m.normalized_shape[0], None, None, m.eps, m.elementwise_affine)
    return None


def describe_norms(model: nn.Module) -> list[NormInfo]:
    """The normalization layers of ``model`` in module order (a layer shared by two paths is listed once).

    Example::

        >>> import groupnorm
        >>> model = groupnorm.models.resnet20(norm="gn")
        >>> [(i.path, i.num_channels, i.num_groups) for i in groupnorm.describe_norms(model)][:2]
        [('bn1', 16, 1), ('layer1.0.bn1', 16, 1)]
    """
    found = []
    for path, m in model.named_modules():
        info = _info(path, m)
        if info is not None:
            found.append(info)
    return found


def summarize_grouping(infos: list[NormInfo]) -> dict[str, int]:
    """How many layers use each ``C/G`` grouping, e.g. ``{"64/32": 3, "2048/32": 3}`` (``C/-`` for batch norms)."""
    counts = Counter(f"{i.num_channels}/{i.num_groups if i.num_groups is not None else '-'}" for i in infos)
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0].split("/")[0])))
