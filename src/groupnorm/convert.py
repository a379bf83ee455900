"""``convert_norms``: replace the batch norms (or torch's group norms) of any ``nn.Module`` tree.

What a replacement keeps, so that a converted model trains and runs where the original did:

* place — nested children, ``Sequential``, ``ModuleList`` and ``ModuleDict`` entries, the root itself; a module
  shared by several parents is replaced by one shared module;
* device, dtype, training flag, each parameter's ``requires_grad``, and ``eps`` (unless ``eps=`` is given);
* the affine parameters: BN's learned ``weight``/``bias`` are copied into the new layer's ``weight``/``bias``
  (both are per-channel scale and shift applied after normalization, so a converted pretrained model starts from
  its learned scales; reset them with ``module.reset_parameters()`` when starting from scratch). Running
  statistics are dropped by GN/LN/IN, which have none, and copied between batch norms (``kind="bn"`` /
  ``"syncbn"``). A source without affine parameters (``affine=False``) gets a replacement without them, unless
  ``affine=`` is passed.

Sources: ``source="bn"`` (default) replaces ``BatchNorm1d/2d/3d`` and ``SyncBatchNorm`` and their subclasses that
keep the inherited ``forward``, and torchvision's ``FrozenBatchNorm2d`` (detection backbones: its frozen scale and
shift become trainable parameters of the new layer, as in the paper's detection models). timm's norm+activation
modules (``BatchNormAct2d``: a BN subclass holding ``drop`` and ``act``) become a ``GroupNorm`` with the activation
fused when it is ReLU/SiLU/GELU and ``drop`` is the identity, else ``Sequential(norm, drop, act)``. Other
subclasses, whose ``forward`` we cannot know, are left in place and listed in ``summary.skipped``.
``source="gn"`` moves ``torch.nn.GroupNorm`` layers (same groups) onto :class:`groupnorm.GroupNorm` and its fused
op, and so timm's ``GroupNorm``/``GroupNorm1`` (whose ``forward`` is plain GroupNorm) and ``GroupNormAct``.

``convert_norms`` returns the model, like ``SyncBatchNorm.convert_sync_batchnorm``; the summary of what it did is
logged at INFO on the ``"groupnorm"`` logger, and ``return_report=True`` returns ``(model, summary)``.

Example::

    >>> import torchvision, groupnorm
    >>> model, summary = groupnorm.convert_norms(torchvision.models.resnet50(), "gn", return_report=True)
    >>> len(summary.replaced), summary.group_changes
    (53, [])
    >>> print(summary)  # doctest: +ELLIPSIS
    convert_norms: 53 layer(s) -> gn
      bn1: BatchNorm2d(64, ...) -> GroupNorm(32, 64, ...)
    ...
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import Literal, overload

import torch
from torch import nn

from groupnorm.activations import module_activation_name
from groupnorm.layers.distributed import DistributedGroupNorm
from groupnorm.layers.group_norm import GroupNorm
from groupnorm.layers.grouping import GroupChange
from groupnorm.layers.norm_registry import GroupingWarning, NormLayer, norm_layer
from groupnorm.patching import timm as timm_norms

_BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_BN_DIMS: dict[type[nn.Module], int | None] = {
    nn.BatchNorm1d: 1,
    nn.BatchNorm2d: 2,
    nn.BatchNorm3d: 3,
    nn.SyncBatchNorm: None,
}
SOURCES: tuple[str, ...] = ("bn", "gn")


def _frozen_batch_norms() -> tuple[type[nn.Module], ...]:
    """torchvision's ``FrozenBatchNorm2d`` (detection backbones), when torchvision is already loaded: a model
    holding one has imported it, so nothing is imported here."""
    misc = sys.modules.get("torchvision.ops.misc")
    frozen = getattr(misc, "FrozenBatchNorm2d", None)
    return (frozen,) if isinstance(frozen, type) else ()


def _num_channels(m: nn.Module) -> int:
    for name in ("num_features", "num_channels"):
        if hasattr(m, name):
            return int(getattr(m, name))
    return int(m.weight.shape[0])  # FrozenBatchNorm2d keeps only its buffers


@dataclass(frozen=True)
class Replacement:
    """One replaced module: where, what it was and what it is now (their reprs)."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Skipped:
    """A module of a source type that was left in place, and why."""

    path: str
    type: str
    reason: str


@dataclass
class ConversionSummary:
    """What :func:`convert_norms` did; ``str(summary)`` is a readable table, ``to_dict()`` is JSON-ready."""

    kind: str
    replaced: list[Replacement] = field(default_factory=list)
    group_changes: list[GroupChange] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "replaced": [asdict(r) for r in self.replaced],
            "group_changes": [asdict(c) for c in self.group_changes],
            "skipped": [asdict(s) for s in self.skipped],
        }

    def __str__(self) -> str:
        lines = [f"convert_norms: {len(self.replaced)} layer(s) -> {self.kind}"]
        lines += [f"  {r.path or '<root>'}: {r.old} -> {r.new}" for r in self.replaced]
        if self.group_changes:
            lines.append(f"group count changed in {len(self.group_changes)} layer(s):")
            lines += [f"  {c}" for c in self.group_changes]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} layer(s):")
            lines += [f"  {s.path or '<root>'} ({s.type}): {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def _base_of(m: nn.Module, bases: tuple[type[nn.Module], ...]) -> type[nn.Module] | None:
    """The first of ``bases`` that ``m`` is an instance of."""
    return next((b for b in bases if isinstance(m, b)), None)


def _reference_tensor(m: nn.Module) -> torch.Tensor | None:
    """A floating-point parameter or buffer of ``m``, whose device and dtype the replacement takes."""
    tensors = chain(m.parameters(recurse=False), m.buffers(recurse=False))
    return next((t for t in tensors if t.is_floating_point()), None)


def _copy_state(old: nn.Module, new: nn.Module, keep_eps: bool) -> None:
    """Copy affine parameters (and running statistics between batch norms) from ``old`` into ``new``."""
    with torch.no_grad():
        for name in ("weight", "bias"):
            src, dst = getattr(old, name, None), getattr(new, name, None)
            if isinstance(src, torch.Tensor) and isinstance(dst, torch.Tensor) and src.shape == dst.shape:
                dst.copy_(src)
                # A frozen batch norm keeps its scale and shift as buffers; as GN parameters they train, which is
                # what replacing frozen BN by GN is for (the paper's detection backbones).
                if isinstance(src, nn.Parameter):
                    dst.requires_grad_(src.requires_grad)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            src, dst = getattr(old, name, None), getattr(new, name, None)
            if isinstance(src, torch.Tensor) and isinstance(dst, torch.Tensor) and src.shape == dst.shape:
                dst.copy_(src)
    if keep_eps and hasattr(new, "eps") and hasattr(old, "eps"):
        new.eps = old.eps
    if hasattr(new, "momentum") and hasattr(old, "momentum"):
        new.momentum = old.momentum


class _Converter:
    def __init__(
        self,
        kind: str,
        layer: Callable[[int], nn.Module] | None,
        source: str,
        keep_eps: bool,
        bn_kwargs: dict[str, object],
        process_group: object | None = None,
    ) -> None:
        self.kind = kind
        self.process_group = process_group
        self.layer = layer
        self.bn_kwargs = bn_kwargs
        self.source = source
        self.keep_eps = keep_eps
        self.bn_layers: dict[int | None, NormLayer] = {}
        self.summary = ConversionSummary(kind)
        self.done: dict[int, tuple[nn.Module, str]] = {}
        self.pending: list[tuple[nn.Module, str, nn.Module]] = []
        self.non_affine: dict[int, NormLayer] = {}

    # -- which modules are sources -------------------------------------------------------------------------
    def _classify(self, m: nn.Module) -> tuple[str, str] | None:
        """``("plain" | "act", base name)`` for a replaceable source, ``("skip", reason)`` for a source subclass
        we cannot convert faithfully, None for anything else."""
        bases = (*_BATCH_NORMS, *_frozen_batch_norms()) if self.source == "bn" else (nn.GroupNorm,)
        base = _base_of(m, bases)
        if base is None:
            return None
        if self.source == "gn" and isinstance(m, GroupNorm):
            if self.process_group is not None and not isinstance(m, DistributedGroupNorm):
                return ("plain", "GroupNorm")  # fused already (e.g. by groupnorm.patch); becomes distributed
            return None  # already on the fused op
        if self.kind in ("bn", "syncbn") and self.source == "bn":
            if isinstance(m, nn.SyncBatchNorm) == (self.kind == "syncbn"):
                return None  # already the requested kind of batch norm
        if hasattr(m, "num_features") and getattr(m, "num_features", 1) == 0:
            return ("skip", "uninitialized lazy module (run a forward first)")
        if type(m).forward is base.forward:
            return ("plain", base.__name__)
        if self.source == "gn" and timm_norms.classify_norm(m) == ("plain", ""):
            # timm's GroupNorm/GroupNorm1 override forward only to pick timm's fast-norm path: plain GroupNorm
            return ("plain", base.__name__)
        if isinstance(getattr(m, "act", None), nn.Module) and isinstance(getattr(m, "drop", None), nn.Module):
            if self.kind in ("bn", "syncbn"):
                return (
                    "skip",
                    "a norm+activation module is already a batch norm; use its library's converter",
                )
            return ("act", base.__name__)
        return (
            "skip",
            f"{type(m).__name__} overrides forward(); converting it could change what it computes",
        )

    # -- building replacements ------------------------------------------------------------------------------
    def _new_norm(self, m: nn.Module, path: str) -> nn.Module:
        channels = _num_channels(m)
        if self.source == "gn":
            if self.process_group is not None:
                return DistributedGroupNorm.from_module(m, process_group=self.process_group)
            return GroupNorm.from_module(m)
        if self.layer is not None:
            layer = self.layer
        else:  # kind == "bn": keep the source's dimensionality
            dim = _BN_DIMS.get(_base_of(m, _BATCH_NORMS), 2)  # type: ignore[arg-type]  # FrozenBatchNorm2d: 2
            if dim not in self.bn_layers:
                self.bn_layers[dim] = norm_layer("bn", **{"dim": dim, **self.bn_kwargs})
            layer = self.bn_layers[dim]
        if (
            isinstance(layer, NormLayer)
            and getattr(m, "affine", True) is False
            and "affine" not in layer.kwargs
        ):
            layer = self._without_affine(layer)
        seen = len(layer.changes) if isinstance(layer, NormLayer) else 0
        new = layer(channels)
        if isinstance(layer, NormLayer):
            self.summary.group_changes += [c.at(path) for c in layer.changes[seen:]]
        ref = _reference_tensor(m)
        if ref is not None:  # before copying, so parameters are not rounded through the default dtype
            new = new.to(device=ref.device, dtype=ref.dtype)
        _copy_state(m, new, self.keep_eps)
        if self.process_group is not None:
            if not isinstance(new, GroupNorm):
                raise ValueError(
                    "process_group= builds DistributedGroupNorm layers, so kind must give group norms "
                    f"('gn', 'ln', 'in'), got kind={self.kind!r} building {type(new).__name__} at {path or '<root>'}"
                )
            new = DistributedGroupNorm.from_module(new, process_group=self.process_group)
        return new.train(m.training)

    def _without_affine(self, layer: NormLayer) -> NormLayer:
        """``layer`` with ``affine=False``, for a source without affine parameters (when the kind takes it)."""
        key = id(layer)
        if key not in self.non_affine:
            try:
                variant = norm_layer(
                    layer.kind, warn=layer.warn, **layer.grouping, **layer.kwargs, affine=False
                )
            except TypeError:  # the kind has no affine option: build it as configured
                variant = layer
            variant.changes = layer.changes  # one change list per requested configuration
            self.non_affine[key] = variant
        return self.non_affine[key]

    def _replacement(self, m: nn.Module, path: str) -> nn.Module | None:
        cls = self._classify(m)
        if cls is None:
            return None
        what, detail = cls
        if what == "skip":
            self.summary.skipped.append(Skipped(path, type(m).__name__, detail))
            return m
        new = self._new_norm(m, path)
        if what == "act":
            act_name = module_activation_name(m.act)
            if (
                isinstance(new, GroupNorm)
                and new.activation is None
                and isinstance(m.drop, nn.Identity)
                and act_name
            ):
                new.activation = act_name
            else:
                new = nn.Sequential(OrderedDict(norm=new, drop=m.drop, act=m.act)).train(m.training)
        self.summary.replaced.append(Replacement(path, repr(m), repr(new)))
        return new

    def convert(self, m: nn.Module, path: str) -> nn.Module:
        """``m`` converted: a replacement when ``m`` is a source, else ``m`` with its children converted."""
        if id(m) in self.done:
            new, first = self.done[id(m)]
            if new is not m:
                self.summary.replaced.append(
                    Replacement(path, f"(shared with {first or '<root>'})", repr(new))
                )
            return new
        new = self._replacement(m, path)
        if new is None:
            new = m
            for name, child in list(m.named_children()):
                converted = self.convert(child, f"{path}.{name}" if path else name)
                if converted is not child:
                    self.pending.append((m, name, converted))
        self.done[id(m)] = (new, path)
        return new

    def apply(self) -> None:
        """Put the replacements in place; done after every one was built, so a refused layer changes nothing."""
        for parent, name, new in self.pending:
            setattr(parent, name, new)


_log = logging.getLogger("groupnorm")


def _check_return_report(return_report: object) -> None:
    """Refuse a ``return_report`` that is not a bool (a truthy string or 1 would change the return type unseen)."""
    if not isinstance(return_report, bool):
        raise TypeError(
            f"return_report must be a bool (True or False), got return_report={return_report!r} "
            f"of type {type(return_report).__name__}"
        )


@overload
def convert_norms(
    model: nn.Module,
    kind: str | Callable[[int], nn.Module] = ...,
    *,
    num_groups: int | str | None = ...,
    group_size: int | None = ...,
    fallback: str | None = ...,
    min_group_size: int = ...,
    eps: float | None = ...,
    source: str = ...,
    process_group: object | None = ...,
    return_report: Literal[False] = ...,
    **norm_kwargs: object,
) -> nn.Module: ...


@overload
def convert_norms(
    model: nn.Module,
    kind: str | Callable[[int], nn.Module] = ...,
    *,
    num_groups: int | str | None = ...,
    group_size: int | None = ...,
    fallback: str | None = ...,
    min_group_size: int = ...,
    eps: float | None = ...,
    source: str = ...,
    process_group: object | None = ...,
    return_report: Literal[True],
    **norm_kwargs: object,
) -> tuple[nn.Module, ConversionSummary]: ...


def convert_norms(
    model: nn.Module,
    kind: str | Callable[[int], nn.Module] = "gn",
    *,
    num_groups: int | str | None = None,
    group_size: int | None = None,
    fallback: str | None = None,
    min_group_size: int = 2,
    eps: float | None = None,
    source: str = "bn",
    process_group: object | None = None,
    return_report: bool = False,
    **norm_kwargs: object,
) -> nn.Module | tuple[nn.Module, ConversionSummary]:
    """Replace every batch norm in ``model`` (in place) by ``kind``; return the model.

    Like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``, the result is the model itself (or the replacement,
    when ``model`` is itself a norm), so ``model = convert_norms(model, "gn")`` is ready to call. The
    :class:`ConversionSummary` of what was replaced, regrouped and skipped is logged at INFO on the
    ``"groupnorm"`` logger (one record, ``str(summary)``; the library adds no handlers, so it shows once your
    application configures logging, e.g. ``logging.basicConfig(level=logging.INFO)``), and
    ``return_report=True`` returns ``(model, summary)`` instead.

    All replacements are built before any is put in place: an error (a group count that does not divide)
    leaves the model as it was.

    ``kind`` is a :func:`groupnorm.norm_layer` kind (``"gn"``, ``"ln"``, ``"in"``, ``"bn"``, ``"syncbn"``,
    ``"none"``, or a registered one) or a ready ``channels -> nn.Module`` callable. For ``"gn"`` the groups come
    from ``num_groups`` (32 when neither is given; ``"auto"`` for the rule of :mod:`groupnorm.layers.grouping`) or
    ``group_size``; a channel count that does not divide is an error unless ``fallback="gcd"``, and every adapted
    count is listed in ``summary.group_changes`` (with its module path) and announced by one
    :class:`groupnorm.GroupingWarning`. ``eps=None`` keeps each replaced layer's eps. Other keyword arguments
    (``activation=``, ``affine=``, ...) go to the norm factory. See the module docstring for what is kept.

    ``kind="bn"`` turns ``SyncBatchNorm`` back into single-process batch norms; ``kind="syncbn"`` does the
    reverse. ``source="gn"`` converts ``torch.nn.GroupNorm`` layers to :class:`groupnorm.GroupNorm` instead.

    ``process_group`` (a ``torch.distributed`` group, or ``dist.group.WORLD`` for the default one) makes every new
    group norm a :class:`groupnorm.DistributedGroupNorm` over that group, for inputs split spatially over its
    ranks; with ``source="gn"`` it also converts :class:`groupnorm.GroupNorm` layers (e.g. after
    :func:`groupnorm.patch`, keeping their fused activations).

    Example::

        >>> import torch
        >>> make = lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3), torch.nn.BatchNorm2d(48))
        >>> model = convert_norms(make(), "gn", group_size=16)
        >>> model[1]
        GroupNorm(3, 48, eps=1e-05, affine=True, bias=True)
        >>> model, summary = convert_norms(make(), "gn", group_size=16, return_report=True)
        >>> print(summary)  # doctest: +ELLIPSIS
        convert_norms: 1 layer(s) -> gn
          1: BatchNorm2d(48, ...) -> GroupNorm(3, 48, ...)
        >>> model, summary = convert_norms(  # doctest: +SKIP
        ...     make(), "gn", num_groups=32, fallback="gcd", return_report=True
        ... )
        >>> [str(change) for change in summary.group_changes]  # where C was not divisible by 32  # doctest: +SKIP
        ['1: C=48 num_groups=32 -> num_groups=16 (gcd(48, 32))']
    """
    _check_return_report(return_report)
    model, summary = _convert_norms(
        model,
        kind,
        num_groups=num_groups,
        group_size=group_size,
        fallback=fallback,
        min_group_size=min_group_size,
        eps=eps,
        source=source,
        process_group=process_group,
        **norm_kwargs,
    )
    _log.info("%s", summary)
    return (model, summary) if return_report else model


def _convert_norms(
    model: nn.Module,
    kind: str | Callable[[int], nn.Module] = "gn",
    *,
    num_groups: int | str | None = None,
    group_size: int | None = None,
    fallback: str | None = None,
    min_group_size: int = 2,
    eps: float | None = None,
    source: str = "bn",
    process_group: object | None = None,
    **norm_kwargs: object,
) -> tuple[nn.Module, ConversionSummary]:
    """:func:`convert_norms` returning ``(model, summary)`` and logging nothing: for the library's own callers
    (``patch`` logs its report, which covers the conversion). Its warnings point at the public caller."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got model of type {type(model).__name__}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got source={source!r}")
    grouping = {
        k: v
        for k, v in dict(num_groups=num_groups, group_size=group_size, fallback=fallback).items()
        if v is not None
    }
    if fallback is not None:
        grouping["min_group_size"] = min_group_size
    if eps is not None:
        norm_kwargs["eps"] = eps

    layer: Callable[[int], nn.Module] | None
    if source == "gn":
        if kind != "gn" or grouping or norm_kwargs:
            raise ValueError(
                "source='gn' keeps each layer's groups and options: pass kind='gn' and no grouping or norm options, "
                f"got kind={kind!r}, options={ {**grouping, **norm_kwargs} }"
            )
        layer, name = None, "gn"
    elif isinstance(kind, str):
        # Unknown kinds and options fail here, before the model is touched.
        layer = norm_layer(kind, warn=False, **grouping, **norm_kwargs)
        if kind == "bn":
            layer = None  # one batch norm per source dimensionality (unless dim= is given)
        name = kind
    elif callable(kind):
        if grouping or norm_kwargs:
            raise ValueError(
                "grouping and norm options configure a kind name; with a norm callable pass none, "
                f"got {', '.join(f'{k}={v!r}' for k, v in {**grouping, **norm_kwargs}.items())}"
            )
        layer, name = kind, getattr(kind, "kind", getattr(kind, "__name__", repr(kind)))
    else:
        raise TypeError(
            f"kind must be a norm kind name or a channels -> nn.Module callable, got kind={kind!r}"
        )

    converter = _Converter(
        name, layer, source, keep_eps=eps is None, bn_kwargs=norm_kwargs, process_group=process_group
    )
    model = converter.convert(model, "")
    converter.apply()
    summary = converter.summary
    if summary.group_changes:
        warnings.warn(
            f"convert_norms changed the group count of {len(summary.group_changes)} layer(s) "
            f"(first: {summary.group_changes[0]}); see summary.group_changes (return_report=True returns it)",
            GroupingWarning,
            stacklevel=3,
        )
    if summary.skipped:
        warnings.warn(
            f"convert_norms left {len(summary.skipped)} layer(s) in place "
            f"(first: {summary.skipped[0].path}: {summary.skipped[0].reason}); "
            "see summary.skipped (return_report=True returns it)",
            stacklevel=3,
        )
    return model, summary
