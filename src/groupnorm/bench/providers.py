"""Benchmark providers: a registry of name -> setup function.

A setup function gets the prepared inputs (:class:`Inputs`) and returns a function that runs one call of the
timed work for a mode: ``fwd`` (forward only, no autograd), ``bwd`` (the backward of a forward built once) or
``fwd+bwd``. Providers can live in their own module: :func:`register_provider` at import, and name the module in
:data:`PLUGIN_MODULES`. Such a module is imported on first use of the registry; when that fails (its optional
dependencies are missing, or a bug), the provider is left out and :func:`load_errors` says why.

Example::

    >>> from groupnorm.bench import providers
    >>> def setup(inp, mode):
    ...     return lambda: inp.x.clone()
    >>> providers.register_provider("clone", setup, description="a copy, for testing", default=False)
    >>> "clone" in providers.names()
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from groupnorm import env
from groupnorm.activations import apply_activation

MODES = ("fwd", "bwd", "fwd+bwd")


@dataclass
class Inputs:
    """Tensors for one benchmark case; ``x`` already in the case's dtype, layout and device."""

    x: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    groups: int
    activation: str
    residual: torch.Tensor | None
    grad: torch.Tensor


SetupFn = Callable[[Inputs, str], Callable[[], object]]


@dataclass(frozen=True)
class Provider:
    name: str
    setup: SetupFn
    description: str
    default: bool  # part of the presets unless --providers names it


_PROVIDERS: dict[str, Provider] = {}
# Optional providers: name -> the module that registers it.
PLUGIN_MODULES = {"liger": "groupnorm.bench.providers_liger"}
_plugins_loaded = False
_load_errors: dict[str, str] = {}


def register_provider(name: str, setup: SetupFn, *, description: str = "", default: bool = True) -> None:
    """Add (or replace) a provider."""
    _PROVIDERS[name] = Provider(name, setup, description, default)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for name, module in PLUGIN_MODULES.items():
        try:
            importlib.import_module(module)
        except Exception as e:
            # Kept, not raised: one broken optional provider must not stop the others' benchmark; but a plugin
            # that vanished silently (a renamed import once hid liger everywhere) is reported by load_errors().
            _load_errors[name] = f"{type(e).__name__}: {e}"


def load_errors() -> dict[str, str]:
    """The optional providers that could not be loaded: name -> ``"ExceptionType: message"``."""
    _load_plugins()
    return dict(_load_errors)


def not_loaded_lines() -> list[str]:
    """One line per provider that could not be loaded, e.g. ``provider liger not loaded: ModuleNotFoundError: ...``."""
    return [f"provider {name} not loaded: {error}" for name, error in load_errors().items()]


def names() -> list[str]:
    _load_plugins()
    return list(_PROVIDERS)


def get(name: str) -> Provider:
    _load_plugins()
    if name not in _PROVIDERS:
        if name in _load_errors:
            raise ValueError(f"provider {name} not loaded: {_load_errors[name]}")
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(_PROVIDERS)}")
    return _PROVIDERS[name]


def autograd_runner(inp: Inputs, mode: str, fn: Callable[..., torch.Tensor]) -> Callable[[], object]:
    """fwd / bwd / fwd+bwd runners around ``fn(x, weight, bias, residual)``."""
    if mode == "fwd":

        def run_fwd():
            with torch.no_grad():
                return fn(inp.x, inp.weight, inp.bias, inp.residual)

        return run_fwd
    leaves = [t.detach().requires_grad_(True) for t in (inp.x, inp.weight, inp.bias)]
    res = None if inp.residual is None else inp.residual.detach().requires_grad_(True)
    wrt = leaves + ([res] if res is not None else [])
    if mode == "fwd+bwd":

        def run_fwd_bwd():
            out = fn(*leaves, res)
            return torch.autograd.grad(out, wrt, inp.grad)

        return run_fwd_bwd
    if mode == "bwd":
        out = fn(*leaves, res)

        def run_bwd():
            return torch.autograd.grad(out, wrt, inp.grad, retain_graph=True)

        return run_bwd
    raise ValueError(f"mode must be one of {MODES}, got mode={mode!r}")


def torch_eager(x, weight, bias, residual, *, groups: int, activation: str) -> torch.Tensor:
    """torch's own group_norm followed by the epilogue as separate ops (what a model does without us)."""
    out = F.group_norm(x, groups, weight, bias)
    if residual is not None:
        out = out + residual
    return apply_activation(out, activation)  # the plain-torch formulas of the activation table


def _setup_torch(inp: Inputs, mode: str):
    def fn(x, w, b, r):
        return torch_eager(x, w, b, r, groups=inp.groups, activation=inp.activation)

    return autograd_runner(inp, mode, fn)


_compiled: dict[tuple, Callable] = {}


def _raise_recompile_limit(limit: int = 256) -> None:
    """Dynamo keeps one cache of compiled graphs per code object, with a small limit; every benchmark case
    compiles the same code for another shape, so the limit would end in silent eager fallbacks."""
    import torch._dynamo

    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):  # fmt: skip
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(limit, getattr(torch._dynamo.config, name)))


def _setup_torch_compile(inp: Inputs, mode: str):
    # One compiled function per case (shape, strides, dtype, epilogue, mode): never a recompile of another's.
    key = (
        tuple(inp.x.shape), inp.x.stride(), inp.x.dtype, inp.x.device.type, inp.groups, inp.activation,
        inp.residual is not None, mode,
    )  # fmt: skip
    if key not in _compiled:
        _raise_recompile_limit()

        def fn(x, w, b, r):
            return torch_eager(x, w, b, r, groups=inp.groups, activation=inp.activation)

        # GROUPNORM_BENCH_COMPILE_BACKEND: another backend than inductor (a dry run uses aot_eager: no codegen).
        backend = env.BENCH_COMPILE_BACKEND.get()
        _compiled[key] = torch.compile(fn, dynamic=False, backend=backend)
    return autograd_runner(inp, mode, _compiled[key])


def _setup_groupnorm(inp: Inputs, mode: str):
    import groupnorm.ops.cpu  # noqa: F401  (registers the CPU kernels; compiles nothing)
    from groupnorm.functional import group_norm

    act = None if inp.activation == "none" else inp.activation

    def fn(x, w, b, r):
        return group_norm(x, inp.groups, w, b, activation=act, residual=r)

    return autograd_runner(inp, mode, fn)


register_provider("groupnorm", _setup_groupnorm, description="this package's op (fused epilogue)")
register_provider("torch", _setup_torch, description="torch eager: F.group_norm, then the epilogue ops")
register_provider(
    "torch-compile",
    _setup_torch_compile,
    description="torch.compile of the eager code, one compiled function per case (slow to compile; only when named)",
    default=False,
)
