"""The backward launcher: runs a :class:`~groupnorm.ops.triton.launch_plan.BackwardPlan` on the call's tensors.

What to launch is the plan's; this adds the call's own constants (which inputs are given, which gradients are
wanted, the activation), allocates the gradients and workspaces and passes the kernels' positional arguments.
As the forward's, the description of a call is computed once per layout key (:func:`backward_launch`).

Example (CPU, interpreter)::

    $ TRITON_INTERPRET=1 python -c "
    import torch
    from groupnorm.ops.triton.forward_launcher import forward
    from groupnorm.ops.triton.backward_launcher import backward
    x = torch.randn(2, 8, 5, 5)
    y, mean, rstd = forward(x, None, None, 4, 1e-5, 'none', None, None, None)
    dx = backward(torch.randn_like(x), x, None, None, mean, rstd, 4, 'none', None, None, None, [True] * 6)[0]"
"""

from __future__ import annotations

import functools

import torch

from groupnorm.ops.triton import backward_kernels as bk
from groupnorm.ops.triton import layout, param_grads
from groupnorm.ops.triton.devices import device_context
from groupnorm.ops.triton.epilogue import ACTIVATION_CODES
from groupnorm.ops.triton.launch_plan import backward_plan
from groupnorm.ops.triton.launch_setup import LaunchDescription, bind_steps, epilogue_flags, setup
from groupnorm.ops.triton.planner import DeviceSpec, Tuning

_PARAM_KERNEL = "bwd_param_kernel"


class BackwardLaunch(LaunchDescription):
    """Everything a backward call of one layout needs besides the tensors."""

    __slots__ = ("param_step", "count", "want", "grad_copy")


@functools.lru_cache(maxsize=layout.CACHE_SIZE)
def backward_launch(
    grad_y: tuple,
    x: tuple,
    x_device: torch.device,
    num_groups: int,
    activation: str,
    has: tuple[bool, bool, bool, bool],
    residual: tuple | None,
    output_mask: tuple[bool, ...],
    device: DeviceSpec | None,
    tuning: Tuning | None,
) -> BackwardLaunch:
    """The launch description of a backward call (arguments as :func:`forward_launch`'s)."""
    groups, x_layout, spec = setup(x, x_device, num_groups, device)
    has_w, has_b, has_scale, has_shift = has
    want_dx, want_dw, want_db, want_dres, want_dscale, want_dshift = output_mask
    want_dw &= has_w
    want_db &= has_b
    want_dres &= residual is not None
    want_dscale &= has_scale
    want_dshift &= has_shift
    want_params = want_dw or want_db or want_dscale or want_dshift
    act = ACTIVATION_CODES[activation]
    p = backward_plan(
        layout.addressed(grad_y), x_layout, num_groups, spec, tuning, layout.addressed(residual),
        activation=bool(act), input_grads=want_dx or want_dres, param_grads=want_params,
    )  # fmt: skip
    lp = BackwardLaunch(p, groups, num_groups, residual, x_device)
    epilogue = epilogue_flags(has, residual is not None, act)
    wants = dict(WANT_DX=want_dx, WANT_DRES=want_dres)
    call_flags = {  # the call's constants, per kernel
        "bwd_onepass_flat_kernel": {**epilogue, **wants, "WANT_PQ": want_params},
        "bwd_onepass_kernel": {**epilogue, **wants, "WANT_PQ": want_params},
        "bwd_partial_kernel": epilogue,
        "bwd_total_kernel": {},
        "bwd_dx_kernel": {**epilogue, **wants},
        _PARAM_KERNEL: dict(
            HAS_W=has_w,
            HAS_B=has_b,
            HAS_SCALE=has_scale,
            WANT_DW=want_dw,
            WANT_DB=want_db,
            WANT_DSCALE=want_dscale,
            WANT_DSHIFT=want_dshift,
        ),
    }
    steps = bind_steps(p.launches, call_flags)
    lp.param_step = steps.pop() if want_params else None  # the plan's last launch
    lp.steps = tuple(steps)
    lp.count = float(groups.per_group * groups.spatial)
    lp.strides = (*p.x_strides, *p.grad_strides, *p.residual_strides)
    lp.want = (want_dx, want_dw, want_db, want_dres, want_dscale, want_dshift, want_params)
    lp.grad_copy = layout.needs_copy(grad_y)
    return lp


def backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    num_groups: int,
    activation: str,
    residual: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    output_mask: list[bool],
    *,
    device: DeviceSpec | None = None,
    tuning: Tuning | None = None,
    bk=bk,
) -> tuple[torch.Tensor, ...]:
    """``(dx, dweight, dbias, dresidual, dscale, dshift)`` as the registered backward.

    A gradient that is masked out or whose input is None is an empty tensor; the others take their owner's dtype
    and strides. ``bk``: where the kernels are looked up, as :func:`forward`'s ``fk``.
    """
    has = (weight is not None, bias is not None, scale is not None, shift is not None)
    lp = backward_launch(
        layout.key(grad_y), layout.key(x), x.device, num_groups, activation, has, layout.key(residual),
        tuple(bool(m) for m in output_mask), device, tuning,
    )  # fmt: skip
    want_dx, want_dw, want_db, want_dres, want_dscale, want_dshift, want_params = lp.want
    empty = torch.empty(0, device=x.device, dtype=x.dtype)
    if not (want_dx or want_dres or want_params):
        return (empty,) * 6

    owners = (weight, bias, scale, shift)
    weight, bias, scale, shift = (None if t is None else t.contiguous() for t in owners)
    mean, rstd = mean.contiguous(), rstd.contiguous()
    if lp.grad_copy:
        grad_y = grad_y.contiguous()
    res_k = residual.contiguous() if lp.res_copy else residual
    dx = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device) if want_dx else None
    dres = (
        torch.empty_strided(res_k.shape, res_k.stride(), dtype=res_k.dtype, device=x.device)
        if want_dres
        else None
    )

    p = lp.schedule
    part_p = torch.empty(p.partial_shape, device=x.device, dtype=torch.float32)
    part_q = torch.empty(p.partial_shape, device=x.device, dtype=torch.float32)
    dummy = part_p  # stands in for absent optional tensors; never dereferenced
    inputs = [t if t is not None else dummy for t in (weight, bias, scale, shift, res_k, mean, rstd)]
    outs = [t if t is not None else dummy for t in (dx, dres)]
    c, s, g, cg, group_blocks = lp.scalars
    chunk_s, split = p.work.chunk_s, p.work.split
    with device_context(lp.cuda_index):
        for name, grid, start, kw in lp.steps:
            kernel = getattr(bk, name)[grid]
            if name == "bwd_partial_kernel":
                kernel(
                    grad_y, x, *inputs, part_p, part_q, *lp.scalars, chunk_s, split, start, *lp.strides, **kw
                )  # fmt: skip
            elif name == "bwd_total_kernel":
                kernel(part_p, part_q, c, g, cg, group_blocks, split, start, **kw)
            elif name == "bwd_dx_kernel":  # looped (split 1: sums P and Q itself) or the split path's last
                kernel(
                    grad_y, x, *inputs, *outs, part_p, part_q, *lp.scalars, chunk_s, split, lp.count, start,
                    split * c, *lp.strides, **kw,
                )  # fmt: skip
            elif name == "bwd_onepass_kernel":
                kernel(
                    grad_y, x, *inputs, *outs, part_p, part_q, *lp.scalars, lp.count, start, *lp.strides, **kw
                )  # fmt: skip
            else:  # bwd_onepass_flat_kernel: a group is one run of cg * s elements in x and grad_y
                x_sn, _x_sc, _x_ss, d_sn, _d_sc, _d_ss, *res_strides = lp.strides
                kernel(
                    grad_y, x, *inputs, *outs, part_p, part_q, c, s, g, cg, cg * s, lp.count, x_sn, d_sn,
                    *res_strides, **kw,
                )  # fmt: skip
        grads_params = (None,) * 4
        if want_params:
            wanted = (want_dw, want_db, want_dscale, want_dshift)
            grads_params = param_grads.reduce(
                lp.param_step, wanted, weight, bias, scale, shift, part_p, part_q, bk
            )

    dweight, dbias, dscale, dshift = (
        param_grads.like_owner(grad, owner) if grad is not None else empty
        for grad, owner in zip(grads_params, owners, strict=True)
    )
    if dres is not None and res_k is not residual:
        dres = torch.empty_like(residual).copy_(dres)
    return (
        dx if dx is not None else empty,
        dweight,
        dbias,
        dres if dres is not None else empty,
        dscale,
        dshift,
    )
