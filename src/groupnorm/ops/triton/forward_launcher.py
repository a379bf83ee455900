"""The forward launcher: runs a :class:`~groupnorm.ops.triton.launch_plan.ForwardPlan` on the call's tensors.

What to launch (kernels, grids, block constants) is the plan's; this adds the call's own constants (which of
weight, bias, scale, shift, residual are given, the activation) and the kernels' positional arguments. The plan
and those merged keyword arguments are computed once per layout key and kept in an LRU cache
(:func:`forward_launch`), so a cached call only allocates its outputs and launches.

Example (CPU, interpreter)::

    $ TRITON_INTERPRET=1 python -c "
    import torch
    from groupnorm.ops.triton.forward_launcher import forward
    y, mean, rstd = forward(torch.randn(2, 8, 5, 5), None, None, 4, 1e-5, 'silu', None, None, None)"
"""

from __future__ import annotations

import functools

import torch

from groupnorm.ops.triton import forward_kernels as fk
from groupnorm.ops.triton import layout
from groupnorm.ops.triton.devices import device_context
from groupnorm.ops.triton.epilogue import ACTIVATION_CODES
from groupnorm.ops.triton.launch_plan import forward_plan
from groupnorm.ops.triton.launch_setup import LaunchDescription, bind_steps, epilogue_flags, setup
from groupnorm.ops.triton.planner import DeviceSpec, Tuning


class ForwardLaunch(LaunchDescription):
    """Everything a forward call of one layout needs besides the tensors: the plan and each launch's keywords."""

    __slots__ = ()


@functools.lru_cache(maxsize=layout.CACHE_SIZE)
def forward_launch(
    x: tuple,
    x_device: torch.device,
    num_groups: int,
    activation: str,
    has: tuple[bool, bool, bool, bool],
    residual: tuple | None,
    device: DeviceSpec | None,
    tuning: Tuning | None,
) -> ForwardLaunch:
    """The launch description of a forward call: ``x``/``residual`` are :func:`layout.key` keys, ``has`` says
    which of weight, bias, scale, shift are given. Validates the layout (once per key: the op checked the
    arguments)."""
    groups, x_layout, spec = setup(x, x_device, num_groups, device)
    p = forward_plan(x_layout, num_groups, spec, tuning, layout.addressed(residual))
    lp = ForwardLaunch(p, groups, num_groups, residual, x_device)
    epilogue = epilogue_flags(has, residual is not None, ACTIVATION_CODES[activation])
    call_flags = {  # the call's constants, per kernel: the partial statistics only read x
        "fwd_onepass_flat_kernel": epilogue,
        "fwd_onepass_kernel": epilogue,
        "fwd_partial_stats_kernel": {},
        "fwd_apply_kernel": epilogue,
    }
    lp.steps = tuple(bind_steps(p.launches, call_flags))
    lp.strides = (*p.x_strides, *p.x_strides, *p.residual_strides)  # y has x's strides
    return lp


def forward(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    num_groups: int,
    eps: float,
    activation: str,
    residual: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    *,
    device: DeviceSpec | None = None,
    tuning: Tuning | None = None,
    fk=fk,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, mean, rstd)`` as the registered forward; y has x's strides, mean/rstd are (N, G) float32.

    ``fk`` is where the kernels are looked up: the kernel module itself, or (``traced``) a view of it whose
    kernels are wrapped for torch.compile to trace; a default argument, so the eager call pays nothing for it.
    """
    has = (weight is not None, bias is not None, scale is not None, shift is not None)
    lp = forward_launch(
        layout.key(x), x.device, num_groups, activation, has, layout.key(residual), device, tuning
    )
    if lp.res_copy:
        residual = residual.contiguous()
    # x is dense (checked once per layout), so its strides are what empty_like would give; empty_strided skips
    # re-deriving them on every call.
    y = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
    n = x.shape[0]
    mean = torch.empty((n, num_groups), device=x.device, dtype=torch.float32)
    rstd = torch.empty((n, num_groups), device=x.device, dtype=torch.float32)
    # weight/bias (C,) and scale/shift (N, C) are addressed as contiguous; mean stands in for absent ones (never
    # dereferenced).
    optional = [mean if t is None else t.contiguous() for t in (weight, bias, scale, shift)] + [
        mean if residual is None else residual
    ]
    p = lp.schedule
    c, s, g, cg, group_blocks = lp.scalars
    count = float(cg * s)
    chunk_s, split = p.work.chunk_s, p.work.split
    with device_context(lp.cuda_index):
        # (mean, M2) per program of the split path; mean stands in where there is none (never dereferenced).
        part = torch.empty(p.partials, device=x.device, dtype=torch.float32) if p.partials else mean
        for name, grid, start, kw in lp.steps:
            kernel = getattr(fk, name)[grid]
            if name == "fwd_partial_stats_kernel":
                kernel(x, part, s, g, cg, group_blocks, chunk_s, split, start, *p.x_strides, **kw)
            elif name == "fwd_apply_kernel":
                kernel(
                    x, y, *optional, mean, rstd, part, *lp.scalars, chunk_s, split, eps, start, *lp.strides, **kw
                )  # fmt: skip
            elif name == "fwd_onepass_kernel":
                kernel(x, y, *optional, mean, rstd, *lp.scalars, count, eps, start, *lp.strides, **kw)
            else:  # fwd_onepass_flat_kernel: a group is one run of cg * s elements
                kernel(
                    x, y, *optional, mean, rstd, c, s, g, cg, cg * s, count, eps, p.x_strides[0],
                    *p.residual_strides, **kw,
                )  # fmt: skip
    return y, mean, rstd
