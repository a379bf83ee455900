"""``norm_layer(kind, **kwargs)``: a ``channels -> nn.Module`` callable by name, from an extensible registry.

The callable is what torchvision's ``norm_layer=`` arguments and :mod:`groupnorm.models` expect::

    >>> import groupnorm, torchvision
    >>> gn = groupnorm.norm_layer("gn", num_groups=32)
    >>> gn(64)
    GroupNorm(32, 64, eps=1e-05, affine=True, bias=True)
    >>> model = torchvision.models.resnet50(norm_layer=gn)  # doctest: +SKIP

Built-in kinds:

==========  ===========================================================================================
``bn``      ``nn.BatchNorm2d`` (``dim=1``/``3`` for 1d/3d, ``dim=None`` for any rank: :class:`BatchNormNd`)
``syncbn``  ``nn.SyncBatchNorm``
``gn``      :class:`groupnorm.GroupNorm`; groups from ``num_groups`` (default 32, or ``"auto"``) or ``group_size``
``ln``      :class:`groupnorm.GroupNorm` with one group (layer norm over C and all spatial positions)
``in``      :class:`groupnorm.GroupNorm` with C groups (instance norm, affine)
``none``    ``nn.Identity``
==========  ===========================================================================================

Grouped kinds (``gn`` and any registered with ``grouped=True``) take ``num_groups`` / ``group_size`` /
``fallback`` / ``min_group_size``, resolved per channel count by :func:`groupnorm.layers.grouping.resolve_groups`:
a count that does not divide C is an error unless ``fallback="gcd"`` is passed; then every adapted count is
appended to the callable's ``changes`` list and announced by a :class:`GroupingWarning` (``warn=False`` silences
it). The other keyword arguments go to the factory (``eps``, ``affine``, ``activation``, ``device``, ...).

Register your own kind with :func:`register_norm`::

    >>> groupnorm.register_norm("gn16", lambda c, **kw: groupnorm.GroupNorm(None, c, group_size=16, **kw))
    >>> groupnorm.norm_layer("gn16")(64).num_groups
    4
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.layers.grouping import FALLBACKS, GroupChange, resolve_groups

NormFactory = Callable[..., nn.Module]
NormLike = str | Callable[[int], nn.Module]

GROUPING_KWARGS: tuple[str, ...] = ("num_groups", "group_size", "fallback", "min_group_size")


class GroupingWarning(UserWarning):
    """A norm layer got a different group count than requested (only with an explicit ``fallback``)."""


class BatchNormNd(nn.BatchNorm2d):
    """Batch norm over inputs of any rank >= 2 (what ``nn.SyncBatchNorm`` accepts), for ``norm_layer("bn", dim=None)``
    and for turning ``SyncBatchNorm`` back into a single-process batch norm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions, got input.dim()={input.dim()}")


_BATCH_NORMS: dict[int | None, type[nn.Module]] = {
    1: nn.BatchNorm1d,
    2: nn.BatchNorm2d,
    3: nn.BatchNorm3d,
    None: BatchNormNd,
}


def _batch_norm(
    num_channels: int,
    *,
    dim: int | None = 2,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    affine: bool = True,
    track_running_stats: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    if dim not in _BATCH_NORMS:
        raise ValueError(f"dim must be one of 1, 2, 3 or None (any rank) for kind 'bn', got dim={dim!r}")
    return _BATCH_NORMS[dim](
        num_channels, eps, momentum, affine, track_running_stats, device=device, dtype=dtype
    )


def _sync_batch_norm(
    num_channels: int,
    *,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    affine: bool = True,
    track_running_stats: bool = True,
    process_group: object | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    return nn.SyncBatchNorm(
        num_channels, eps, momentum, affine, track_running_stats, process_group, device=device, dtype=dtype
    )


def _group_norm(
    num_channels: int,
    num_groups: int,
    *,
    eps: float = 1e-5,
    affine: bool = True,
    bias: bool = True,
    activation: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    return GroupNorm(num_groups, num_channels, eps, affine, device, dtype, bias=bias, activation=activation)


def _layer_norm(num_channels: int, **kwargs: object) -> nn.Module:
    return _group_norm(num_channels, 1, **kwargs)  # type: ignore[arg-type]


def _instance_norm(num_channels: int, **kwargs: object) -> nn.Module:
    return _group_norm(num_channels, num_channels, **kwargs)  # type: ignore[arg-type]


# ln/in take exactly gn's options, minus the grouping.
_layer_norm.__signature__ = inspect.signature(_group_norm).replace(  # type: ignore[attr-defined]
    parameters=[p for p in inspect.signature(_group_norm).parameters.values() if p.name != "num_groups"]
)
_instance_norm.__signature__ = _layer_norm.__signature__  # type: ignore[attr-defined]


def _identity(num_channels: int) -> nn.Module:
    return nn.Identity()


@dataclass(frozen=True)
class NormSpec:
    """A registered kind: ``factory(num_channels, [num_groups,] **kwargs) -> nn.Module``."""

    name: str
    factory: NormFactory
    grouped: bool = False  # the factory takes a resolved num_groups as its second argument
    description: str = ""


_NORMS: dict[str, NormSpec] = {}


def register_norm(
    name: str, factory: NormFactory, *, grouped: bool = False, description: str = "", overwrite: bool = False
) -> None:
    """Add a norm kind. ``factory(num_channels, **kwargs)`` builds the module; with ``grouped=True`` it is called
    as ``factory(num_channels, num_groups, **kwargs)`` after the grouping arguments are resolved.
    Re-registering an existing name needs ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got name={name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got factory of type {type(factory).__name__}")
    if name in _NORMS and not overwrite:
        raise ValueError(f"norm kind {name!r} is already registered; pass overwrite=True to replace it")
    _NORMS[name] = NormSpec(name, factory, grouped, description)


def known_norms() -> tuple[str, ...]:
    """The registered kind names, in registration order."""
    return tuple(_NORMS)


def norm_spec(kind: str) -> NormSpec:
    """The registry entry of ``kind``; unknown kinds raise a ValueError that lists the known ones."""
    if not isinstance(kind, str) or kind not in _NORMS:
        raise ValueError(f"unknown norm kind {kind!r}; known kinds: {', '.join(known_norms())}")
    return _NORMS[kind]


@dataclass
class NormLayer:
    """A ``channels -> nn.Module`` callable for one kind and its options (made by :func:`norm_layer`).

    ``changes`` collects every group count the fallback adapted, in call order.
    """

    kind: str
    kwargs: dict[str, object] = field(default_factory=dict)
    grouping: dict[str, object] = field(default_factory=dict)
    warn: bool = True
    changes: list[GroupChange] = field(default_factory=list, repr=False, compare=False)

    def __call__(self, num_channels: int) -> nn.Module:
        spec = norm_spec(self.kind)
        if not spec.grouped:
            return spec.factory(num_channels, **self.kwargs)
        choice = resolve_groups(num_channels, **self.grouping)  # type: ignore[arg-type]
        if choice.change is not None:
            self.changes.append(choice.change)
            if self.warn:
                warnings.warn(f"norm_layer({self.kind!r}): {choice.change}", GroupingWarning, stacklevel=2)
        return spec.factory(num_channels, choice.num_groups, **self.kwargs)

    def __repr__(self) -> str:
        args = [repr(self.kind)] + [f"{k}={v!r}" for k, v in {**self.grouping, **self.kwargs}.items()]
        return f"norm_layer({', '.join(args)})"


def norm_layer(kind: str, *, warn: bool = True, **kwargs: object) -> NormLayer:
    """A ``channels -> nn.Module`` callable for ``kind`` (see the module docstring for kinds and options).

    Options are checked now, so a typo fails here rather than deep inside a model constructor::

        >>> layer = norm_layer("gn", group_size=16)
        >>> layer(64).num_groups
        4
        >>> norm_layer("gn", num_groups=32)(48)
        Traceback (most recent call last):
        ValueError: num_channels C=48 is not divisible by num_groups G=32; pass fallback='gcd' ...
    """
    spec = norm_spec(kind)
    grouping = {k: kwargs.pop(k) for k in GROUPING_KWARGS if k in kwargs}
    if grouping and not spec.grouped:
        raise TypeError(
            f"norm kind {kind!r} takes no grouping options, got {', '.join(f'{k}={v!r}' for k, v in grouping.items())}"
        )
    if spec.grouped:
        fallback = grouping.get("fallback")
        if fallback is not None and fallback not in FALLBACKS:
            raise ValueError(f"fallback must be None or one of {FALLBACKS}, got fallback={fallback!r}")
        if grouping.get("num_groups") is not None and grouping.get("group_size") is not None:
            raise ValueError(
                "pass at most one of num_groups and group_size, "
                f"got num_groups={grouping['num_groups']!r} and group_size={grouping['group_size']!r}"
            )
    try:
        signature = inspect.signature(spec.factory)
    except (TypeError, ValueError):  # builtins and some C callables have no signature: check at call time
        signature = None
    if signature is not None:
        try:
            signature.bind(0, *([1] if spec.grouped else []), **kwargs)
        except TypeError as err:
            raise TypeError(f"norm kind {kind!r} does not take {sorted(kwargs)}: {err}") from None
    return NormLayer(kind, dict(kwargs), grouping, warn)


def as_norm_layer(norm: NormLike, **grouped_defaults: object) -> Callable[[int], nn.Module]:
    """``norm`` as a ``channels -> nn.Module`` callable: a kind name goes through :func:`norm_layer` (grouped kinds
    get ``grouped_defaults``, e.g. ``num_groups="auto"``), a callable is returned as is."""
    if isinstance(norm, str):
        return norm_layer(norm, **(grouped_defaults if norm_spec(norm).grouped else {}))
    if callable(norm):
        return norm
    raise TypeError(f"norm must be a kind name or a channels -> nn.Module callable, got norm={norm!r}")


register_norm("bn", _batch_norm, description="torch.nn.BatchNorm2d (dim=1/3/None for 1d/3d/any rank)")
register_norm("syncbn", _sync_batch_norm, description="torch.nn.SyncBatchNorm")
register_norm("gn", _group_norm, grouped=True, description="groupnorm.GroupNorm, 32 groups by default")
register_norm("ln", _layer_norm, description="groupnorm.GroupNorm with 1 group (layer norm over C, H, W)")
register_norm("in", _instance_norm, description="groupnorm.GroupNorm with C groups (affine instance norm)")
register_norm("none", _identity, description="torch.nn.Identity")
