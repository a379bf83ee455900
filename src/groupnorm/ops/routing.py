"""Which code runs a call: the one decision that ``groupnorm.group_norm``, the layers, the op and ``groupnorm info``
all take from :func:`route`.

A call of the public function (the layers call it too) takes one of three routes:

- ``"op"``: through the registered op ``torch.ops.groupnorm.forward``, whenever something may need to see the op
  itself: a compile or trace in progress, a tensor subclass, a torch-function or dispatch mode, a functorch
  transform, the profiler, autocast on CUDA, or a device other than CPU and CUDA. Inside, the op routes again on
  the real tensors (``route(x, inside_op=True)``), which picks an implementation.
- ``"torch_group_norm"``: torch's own ``torch.nn.functional.group_norm`` (followed by the residual add and the
  ReLU when the call has them), for a small plain float32 CPU call, where torch's whole call costs less than the
  Python path to the kernels, and for a plain float32 CPU call of any size where the kernels were not at least
  as fast as torch on every CPU measured (see :func:`served_by_torch` and :func:`plain_call_to_torch`). Never
  taken inside the op, so a compiled graph always runs the op's implementation.
- ``"implementation"``: the implementation that :func:`groupnorm.ops.registry.select` picks for the tensor (a
  registered kernel for its device, else the plain-torch one), called directly in eager mode
  (:mod:`groupnorm.ops.eager`, without the dispatcher's round trip), or from inside the op.

Example::

    >>> import torch, groupnorm.ops
    >>> from groupnorm.ops.routing import route
    >>> x = torch.randn(2, 8, 4, 4)
    >>> route(x, None, None, 4, 1e-5, "none", None, None, None).via   # small, plain, float32: torch's own
    'torch_group_norm'
    >>> r = route(x, None, None, 4, 1e-5, "silu", None, None, None)   # an epilogue: the kernels, directly
    >>> r.via, r.implementation.name in ("cpu-c", "torch")
    ('implementation', True)
    >>> route(x.to("meta"), None, None, 4, 1e-5, "none", None, None, None).via
    'op'
    >>> route(x, inside_op=True).implementation is r.implementation   # what a compiled graph runs
    True
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from groupnorm import env
from groupnorm.ops import registry
from groupnorm.ops.checks import check_forward_args

TORCH_GROUP_NORM = "torch.nn.functional.group_norm"

_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)


class Route(NamedTuple):
    """How a call runs: ``via`` is ``"op"``, ``"torch_group_norm"`` or ``"implementation"`` (see the module
    docstring); ``implementation`` is set for ``"implementation"`` only."""

    via: str
    implementation: registry.Implementation | None = None

    @property
    def name(self) -> str:
        """What serves the call, as ``groupnorm info`` prints it."""
        if self.via == "implementation":
            return self.implementation.name
        return TORCH_GROUP_NORM if self.via == "torch_group_norm" else "the op (decides on the real tensors)"


OP = Route("op")
TORCH_FUNCTION = Route("torch_group_norm")


def _private(owner, name: str):
    """A private torch query, or one that always says "observed" where this torch version lacks it."""
    return getattr(owner, name, lambda: True)


# private torch queries, looked up once (a torch without one of them makes every call take the op)
_tracing_state = _private(torch._C, "_get_tracing_state")
_function_mode_enabled = _private(torch._C, "_is_torch_function_mode_enabled")
_dispatch_stack_len = _private(torch._C, "_len_torch_dispatch_stack")
_functorch_active = _private(torch._C, "_are_functorch_transforms_active")
_profiler_enabled = _private(torch._C._autograd, "_profiler_enabled")


def _observed() -> bool:
    """True when a compiler, tracer, mode, transform or profiler may need to see the op itself."""
    return bool(
        torch.compiler.is_compiling()
        or _tracing_state() is not None  # torch.jit.trace (and the TorchScript ONNX exporter)
        or _function_mode_enabled()
        or _dispatch_stack_len()
        or _functorch_active()
        or _profiler_enabled()
    )


def eligible(x: Tensor, *others: Tensor | None) -> bool:
    """Whether a call on these tensors may skip the dispatcher (nothing can be watching it).

    Example::

        >>> import torch
        >>> eligible(torch.randn(2, 4, 3)), eligible(torch.randn(2, 4, 3, device="meta"))
        (True, False)
    """
    if type(x) not in _PLAIN_TYPES:
        return False
    for t in others:
        if t is not None and type(t) not in _PLAIN_TYPES:
            return False
    if _observed():
        return False
    # the op registers CUDA autocast (inputs cast to float32): under autocast, CUDA calls go through the op;
    # other devices (meta, MPS, ...) always do
    device = x.device.type
    return device == "cpu" or (device == "cuda" and not torch.is_autocast_enabled("cuda"))


# Below these sizes a plain float32 CPU call (no activation, residual or scale/shift) is served by torch's own
# group_norm: its whole call costs 6-10 us in C++, against about 25 us (forward) and 100-150 us (forward+backward,
# through a Python autograd node) for the path to the compiled kernels. In NCHW torch's kernels are good and ours
# overtake it (forward+backward) only from about 2^20 elements; in channels_last torch's are slow enough that ours
# win from about 2^13 on. Measured with `python -m groupnorm.bench.small_calls`
# (docs/results/bench-cpu/kernel-choice.md). GROUPNORM_CPU_SMALL_NUMEL overrides both (0: always the kernels).
DEFAULT_SMALL_CPU_NUMEL = 1 << 20
DEFAULT_SMALL_CPU_NUMEL_CHANNELS_LAST = 1 << 13
# A ResNet block's end, GN with a ReLU and/or a residual, is one fused call on the kernels and up to three torch
# ops (group_norm, add, relu, each a few us in C++ with its autograd node); below these sizes the three ops cost
# less than the Python path to the fused kernel. Measured with `python -m groupnorm.bench.small_calls` (one thread,
# as in a training worker; docs/results/cifar10-cpu/small-calls.md): forward+backward, the fused kernel is 0.82x
# torch's three ops at 131k elements NCHW and 1.12x at 259k; in channels_last 0.82x at 15k and 1.43x at 62k.
DEFAULT_SMALL_CPU_NUMEL_RELU = 1 << 18
DEFAULT_SMALL_CPU_NUMEL_RELU_CHANNELS_LAST = 1 << 15


def small_cpu_numel(channels_last: bool = False, epilogue: bool = False) -> int:
    """The size below which a float32 CPU call (plain, or with ``epilogue`` a ReLU/residual) goes to torch."""
    override = env.CPU_SMALL_NUMEL.get()
    if override is not None:
        return override
    if epilogue:
        return DEFAULT_SMALL_CPU_NUMEL_RELU_CHANNELS_LAST if channels_last else DEFAULT_SMALL_CPU_NUMEL_RELU
    return DEFAULT_SMALL_CPU_NUMEL_CHANNELS_LAST if channels_last else DEFAULT_SMALL_CPU_NUMEL


@functools.cache
def plain_rule() -> dict:
    """Which plain float32 CPU calls the kernels serve: ``{layout class: {mode: choice}}`` from
    ``plain_routing.json``, derived from committed measurements on every CPU measured (see
    :mod:`groupnorm.bench.plain_rule` and ``scripts/plain_routing.py``)."""
    return json.loads((Path(__file__).parent / "plain_routing.json").read_text())["rule"]


def plain_call_to_torch(x: Tensor, needs_grad: bool) -> bool:
    """Whether a plain (no epilogue) float32 CPU call of any size goes to torch's ``group_norm`` by the measured
    rule: where the kernels were not at least as fast as torch on every CPU measured.

    Example::

        >>> plain_call_to_torch(torch.randn(2, 64, 32, 32), needs_grad=True)  # NCHW: torch is as fast
        True
        >>> x = torch.randn(2, 64, 32, 32).contiguous(memory_format=torch.channels_last)
        >>> plain_call_to_torch(x, needs_grad=True)  # 256 KiB samples, channels_last, training: the kernels
        False
    """
    if x.is_contiguous():
        cls = "nchw"
    else:
        cls = "channels_last_2d" if x.dim() == 4 else "channels_last_other"
    choice = plain_rule()[cls]["fwd+bwd" if needs_grad else "fwd"]
    if isinstance(choice, dict):
        return x.numel() // max(x.shape[0], 1) * x.element_size() > choice["kernels_up_to_sample_bytes"]
    return choice == "torch"


def served_by_torch(x, weight, bias, num_groups, activation, residual, scale, shift) -> bool:
    """Whether an eligible call goes to ``torch.nn.functional.group_norm`` (small, float32, CPU, no scale/shift,
    an activation of none or ReLU; or plain and of any size where the measured rule says torch is as fast).

    Single-element groups stay with the kernels (torch raises there; the op normalizes them to 0).
    """
    if not (
        x.device.type == "cpu"
        and activation in ("none", "relu")
        and (residual is None or residual.dtype == x.dtype)
        and scale is None
        and shift is None
        and x.dtype == torch.float32
        and (weight is None or weight.dtype == torch.float32)
        and (bias is None or bias.dtype == torch.float32)
        and x.numel() > x.shape[0] * num_groups
    ):
        return False
    epilogue = activation != "none" or residual is not None
    threshold = small_cpu_numel(channels_last=not x.is_contiguous(), epilogue=epilogue)
    if x.numel() < threshold:
        return True
    if (
        epilogue or env.CPU_SMALL_NUMEL.get() is not None
    ):  # an explicit size: it alone decides (0: the kernels)
        return False
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if plain_call_to_torch(x, needs_grad):
        return True
    # the rule's "kernels" means the compiled ones: without them (no compiler, GROUPNORM_CPU_KERNEL=0) torch's own
    # group_norm beats the plain-torch composite
    return registry.select(x).name != "cpu-c"


def plain_torch_call(x, num_groups, weight, bias, eps) -> Tensor | None:
    """The result of a plain call (no epilogue, no statistics) that torch serves, computed with the fewest checks
    that keep the op's contract; None when the call is not such a call or torch refuses it (the full path then
    checks the arguments and says what is wrong, in this package's words).

    A plain float32 CPU call is the one whose route is torch's own kernel at most sizes (see
    :func:`plain_call_to_torch`): there the full path's argument checks and route (about 20 us of Python) would be
    10 % of a ResNet-sized call. torch's kernel checks shapes and dtypes itself; what it would accept and the op
    does not (a negative eps, a bool group count, single-element groups) is left to the full path.
    """
    if not (
        type(x) in _PLAIN_TYPES
        and x.dtype is torch.float32
        and x.device.type == "cpu"
        and type(num_groups) is int
        and num_groups > 0
        and type(eps) in (float, int)
        and eps >= 0
        and (weight is None or type(weight) in _PLAIN_TYPES)
        and (bias is None or type(bias) in _PLAIN_TYPES)
        and x.dim() >= 2
        and x.numel() > x.shape[0] * num_groups
        and not _observed()
        and served_by_torch(x, weight, bias, num_groups, "none", None, None, None)
    ):
        return None
    try:
        # torch.nn.functional.group_norm's own kernel, without its Python wrapper's checks (the ones above cover them)
        return torch.group_norm(x, num_groups, weight, bias, eps, False)
    except (RuntimeError, ValueError, TypeError):
        return None


def route(
    x: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    num_groups: int = 1,
    eps: float = 0.0,
    activation: str = "none",
    residual: Tensor | None = None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    *,
    inside_op: bool = False,
) -> Route:
    """The route of a call with the op's arguments (``activation`` canonical, ``num_groups`` resolved).

    From outside the op (``groupnorm.group_norm`` and the layers) the arguments are checked before the choice
    reads them, unless the call goes through the op, which checks them itself. ``inside_op=True`` is the choice
    the op makes on its real tensors; it depends on ``x`` alone, so the op's backward asks with ``x`` only.
    """
    if not inside_op:
        if not eligible(x, weight, bias, residual, scale, shift):
            return OP
        check_forward_args(x, weight, bias, num_groups, eps, activation, residual, scale, shift)
        if served_by_torch(x, weight, bias, num_groups, activation, residual, scale, shift):
            return TORCH_FUNCTION
    return Route("implementation", registry.select(x))
