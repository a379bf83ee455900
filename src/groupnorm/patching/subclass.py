"""A module class with another ``forward``: how ``patch`` changes what a known block, or a graph's fused norm, runs.

``with_forward(cls, forward)`` is a subclass of ``cls`` with the same name, ``repr`` and docstring whose only
change is ``forward`` (no new state): an instance switched to it (``module.__class__ = ...``) keeps its
``state_dict`` keys, and ``isinstance(module, cls)`` still holds. One subclass per ``(cls, forward)``, reused.

Such an instance pickles (and deep-copies) as "an instance of ``cls`` with ``forward``": pickle cannot find a class
made at run time by name, but it finds ``cls`` and the module-level ``forward`` function, and the subclass is made
again on loading.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_SUBCLASSES: dict[tuple[type, Callable], type] = {}


def _new(base: type, forward: Callable) -> nn.Module:
    """An empty instance of ``with_forward(base, forward)``, which unpickling and ``copy.deepcopy`` fill."""
    cls = with_forward(base, forward)
    return cls.__new__(cls)


def _reduce_ex(self: nn.Module, protocol: int) -> tuple:
    cls = type(self)
    return (_new, (cls._groupnorm_base, cls._groupnorm_forward), self.__getstate__())


def with_forward(cls: type, forward: Callable) -> type:
    """The subclass of ``cls`` whose ``forward`` is ``forward`` (a module-level function taking ``self``).

    Example::

        >>> import torch
        >>> def doubled(self, x):
        ...     return 2 * torch.nn.Identity.forward(self, x)
        >>> m = torch.nn.Identity()
        >>> m.__class__ = with_forward(torch.nn.Identity, doubled)
        >>> m(torch.ones(1)), isinstance(m, torch.nn.Identity), m
        (tensor([2.]), True, Identity())
    """
    key = (cls, forward)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type(
            cls.__name__,
            (cls,),
            {
                "forward": forward,
                "__reduce_ex__": _reduce_ex,
                "_groupnorm_base": cls,
                "_groupnorm_forward": forward,
                "__module__": __name__,
                "__qualname__": f"with_forward.<locals>.{cls.__name__}",
                "__doc__": cls.__doc__,
            },
        )
    return _SUBCLASSES[key]


def base_class(cls: type) -> type | None:
    """The class ``cls`` was made from by :func:`with_forward`, or None when it was not made so."""
    return vars(cls).get("_groupnorm_base")
