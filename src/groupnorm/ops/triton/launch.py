"""Launchers: the op's forward/backward signatures on top of the Triton kernels.

They take exactly the registered ops' arguments (see ``groupnorm.ops.op``), plus two keywords the tests use to
force every path on any machine: ``device`` (SM count and L2 size for the planner) and ``tuning``. They run on
CUDA tensors and, with ``TRITON_INTERPRET=1`` set before this module is imported, on CPU tensors.

No host synchronization and no memset: workspaces are ``torch.empty`` and every slot is written before it is read,
so the launchers are safe to capture in a CUDA graph.

Example (CPU, interpreter)::

    $ TRITON_INTERPRET=1 python -c "
    import torch
    from groupnorm.ops.triton import launch
    y, mean, rstd = launch.forward(torch.randn(2, 8, 5, 5), None, None, 4, 1e-5, 'silu', None, None, None)"
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import replace

import torch

from groupnorm.ops.triton import backward_kernels as bk
from groupnorm.ops.triton import forward_kernels as fk
from groupnorm.ops.triton.epilogue import ACTIVATION_CODES
from groupnorm.ops.triton.planner import DeviceSpec, Plan, Tuning, cdiv, next_power_of_2, plan

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_INT32_LIMIT = 2**31 - 1
# What the planner assumes when the tensors are not on a GPU (interpreter runs): small, so that tests of
# ordinary shapes reach the split path and the L2 waves.
INTERPRETER_DEVICE = DeviceSpec(sm_count=4, l2_bytes=256 * 1024)


@functools.cache
def _cuda_device_spec(index: int) -> DeviceSpec:
    props = torch.cuda.get_device_properties(index)
    return DeviceSpec(sm_count=props.multi_processor_count, l2_bytes=int(getattr(props, "L2_cache_size", 0)))


def device_spec(x: torch.Tensor) -> DeviceSpec:
    """The planner's view of the device holding ``x``."""
    if x.is_cuda:
        return _cuda_device_spec(
            x.device.index if x.device.index is not None else torch.cuda.current_device()
        )
    return INTERPRETER_DEVICE


def flat_strides(t: torch.Tensor) -> tuple[int, int, int] | None:
    """Strides of ``t`` (N, C, *spatial) seen as (N, C, S), or None when its spatial dims do not collapse to one.

    Contiguous, channels_last and channels_last_3d tensors all collapse; so does any other layout whose spatial
    dims are nested in order.
    """
    dims = [(size, stride) for size, stride in zip(t.shape[2:], t.stride()[2:], strict=True) if size != 1]
    for (_, outer), (size, inner) in zip(dims, dims[1:], strict=False):
        if outer != inner * size:
            return None
    return t.stride(0), t.stride(1), dims[-1][1] if dims else 1


def _is_dense(t: torch.Tensor) -> bool:
    """True when ``t`` covers its storage span without gaps or overlaps (then ``empty_like`` copies its strides)."""
    expected = 1
    for stride, size in sorted((st, s) for s, st in zip(t.shape, t.stride(), strict=True) if s != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _dense_flat(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when the kernels can address it in place, else a contiguous copy (only for odd layouts)."""
    return t if _is_dense(t) and flat_strides(t) is not None else t.contiguous()


def supports(x: torch.Tensor) -> bool:
    """Whether the Triton kernels take ``x`` (the registry's per-call test)."""
    return (
        x.dtype in SUPPORTED_DTYPES
        and 2 <= x.dim() <= 5
        and x.numel() > 0
        and _is_dense(x)
        and flat_strides(x) is not None
    )


def _max_offset(t: torch.Tensor | None) -> int:
    if t is None or t.numel() == 0:
        return 0
    return sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride(), strict=True)) + 1


def _needs_int64(tuning: Tuning | None, *tensors: torch.Tensor | None) -> bool:
    if tuning is not None and tuning.force_int64:
        return True
    return max(_max_offset(t) for t in tensors) > _INT32_LIMIT


def _check(x: torch.Tensor, num_groups: int) -> tuple[int, int, int, int]:
    if not supports(x):
        raise ValueError(
            "the Triton kernels take dense float32/float16/bfloat16 tensors of rank 2..5 whose spatial dims "
            f"collapse (contiguous, channels_last, channels_last_3d), got input of shape {tuple(x.shape)}, "
            f"stride {x.stride()}, dtype {x.dtype}"
        )
    n, c = x.shape[0], x.shape[1]
    if num_groups <= 0 or c % num_groups != 0:
        raise ValueError(f"num_channels C={c} must be divisible by num_groups G={num_groups}")
    return n, c, math.prod(x.shape[2:]), c // num_groups


def _contig(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


def _strides_or_zero(t: torch.Tensor | None) -> tuple[int, int, int]:
    if t is None:
        return (0, 0, 0)
    strides = flat_strides(t)
    assert strides is not None  # _dense_flat guarantees it
    return strides


def _block_k(split: int, block_c: int) -> int:
    return min(next_power_of_2(split), max(1, next_power_of_2(4096 // block_c)))


def _waves(p: Plan):
    """(first unit, number of units) of each wave."""
    for start in range(0, p.units, p.units_per_wave):
        yield start, min(p.units_per_wave, p.units - start)


def plan_for(
    x: torch.Tensor,
    num_groups: int,
    reread_bytes_per_elem: int,
    device: DeviceSpec | None = None,
    tuning: Tuning | None = None,
) -> Plan:
    """The planner's decision for input ``x`` (see ``planner``); ``device`` defaults to x's own."""
    n, c, s, cg = _check(x, num_groups)
    channels_innermost = flat_strides(x)[1] == 1
    return plan(
        n, num_groups, cg, s, reread_bytes_per_elem, device or device_spec(x), tuning,
        channels_innermost=channels_innermost,
    )  # fmt: skip


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, mean, rstd)`` as the registered forward; y has x's strides, mean/rstd are (N, G) float32."""
    n, c, s, cg = _check(x, num_groups)
    act = ACTIVATION_CODES[activation]
    weight, bias, scale, shift = _contig(weight), _contig(bias), _contig(scale), _contig(shift)
    residual = None if residual is None else _dense_flat(residual)
    y = torch.empty_like(x)
    mean = torch.empty((n, num_groups), device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    p = plan_for(x, num_groups, x.element_size(), device, tuning)
    int64 = _needs_int64(tuning, x, y, residual)
    dummy = mean  # stands in for absent optional tensors; never dereferenced
    optional = [t if t is not None else dummy for t in (weight, bias, scale, shift, residual)]
    flags = dict(
        HAS_W=weight is not None, HAS_B=bias is not None, HAS_SCALE=scale is not None,
        HAS_SHIFT=shift is not None, HAS_RES=residual is not None, ACT=act, INT64=int64,
    )  # fmt: skip
    blocks = dict(BLOCK_S=p.block_s, BLOCK_G=p.block_g, BLOCK_CG=p.block_c, num_warps=p.num_warps)
    x_strides = flat_strides(x)
    strides = (*x_strides, *flat_strides(y), *_strides_or_zero(residual))
    with _on_device(x):
        if p.one_pass:
            fk.fwd_onepass_kernel[(p.units,)](
                x, y, *optional, mean, rstd, c, s, num_groups, cg, p.group_blocks, float(cg * s), eps, 0,
                *strides, **flags, **blocks,
            )  # fmt: skip
            return y, mean, rstd
        part_mean = torch.empty(n * num_groups * p.split, device=x.device, dtype=torch.float32)
        part_m2 = torch.empty_like(part_mean)
        block_k = _block_k(p.split, p.block_g)
        for start, units in _waves(p):
            grid = (units * p.split,)
            fk.fwd_partial_stats_kernel[grid](
                x, part_mean, part_m2, s, num_groups, cg, p.group_blocks, p.chunk_s, p.split, start, *x_strides,
                INT64=int64, **blocks,
            )  # fmt: skip
            fk.fwd_apply_kernel[grid](
                x, y, *optional, mean, rstd, part_mean, part_m2,
                c, s, num_groups, cg, p.group_blocks, p.chunk_s, p.split, eps, start, *strides,
                **flags, **blocks, BLOCK_K=block_k,
            )  # fmt: skip
    return y, mean, rstd


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
) -> tuple[torch.Tensor, ...]:
    """``(dx, dweight, dbias, dresidual, dscale, dshift)`` as the registered backward.

    A gradient that is masked out or whose input is None is an empty tensor; the others take their owner's dtype
    and strides.
    """
    n, c, s, cg = _check(x, num_groups)
    act = ACTIVATION_CODES[activation]
    want_dx, want_dw, want_db, want_dres, want_dscale, want_dshift = (bool(m) for m in output_mask)
    want_dw &= weight is not None
    want_db &= bias is not None
    want_dres &= residual is not None
    want_dscale &= scale is not None
    want_dshift &= shift is not None
    want_params = want_dw or want_db or want_dscale or want_dshift
    empty = x.new_empty(0)
    if not (want_dx or want_dres or want_params):
        return (empty,) * 6

    owners = (weight, bias, scale, shift)
    weight, bias, scale, shift = _contig(weight), _contig(bias), _contig(scale), _contig(shift)
    mean, rstd = mean.contiguous(), rstd.contiguous()
    grad_y = _dense_flat(grad_y)
    res_k = None if residual is None else _dense_flat(residual)
    dx = torch.empty_like(x) if want_dx else None
    dres = torch.empty_like(res_k) if want_dres else None

    tuning = tuning or Tuning()
    # The backward holds x and grad_y (and x_hat, dp, the residual) per element: half the forward's tiles and
    # units keep it within registers (at full size ptxas spills on sm_90 with a residual and an activation).
    bwd_tuning = replace(
        tuning,
        max_onepass_elems=max(1, tuning.max_onepass_elems // 2),
        tile_elems=max(1, tuning.tile_elems // 2),
    )
    reread = x.element_size() + grad_y.element_size()
    if res_k is not None and act:
        reread += res_k.element_size()
    p = plan_for(x, num_groups, reread, device, bwd_tuning)
    int64 = _needs_int64(tuning, x, grad_y, res_k)
    part_p = torch.empty((n, p.split, c), device=x.device, dtype=torch.float32)
    part_q = torch.empty_like(part_p)
    dummy = part_p  # stands in for absent optional tensors; never dereferenced
    inputs = [t if t is not None else dummy for t in (weight, bias, scale, shift, res_k, mean, rstd)]
    outs = [t if t is not None else dummy for t in (dx, dres)]
    flags = dict(
        HAS_W=weight is not None, HAS_B=bias is not None, HAS_SCALE=scale is not None,
        HAS_SHIFT=shift is not None, HAS_RES=res_k is not None, ACT=act, INT64=int64,
    )  # fmt: skip
    blocks = dict(BLOCK_S=p.block_s, BLOCK_G=p.block_g, BLOCK_CG=p.block_c, num_warps=p.num_warps)
    strides = (*flat_strides(x), *flat_strides(grad_y), *_strides_or_zero(res_k))
    count = float(cg * s)
    with _on_device(x):
        if p.one_pass:
            bk.bwd_onepass_kernel[(p.units,)](
                grad_y, x, *inputs, *outs, part_p, part_q, c, s, num_groups, cg, p.group_blocks, count, 0,
                *strides, **flags, WANT_DX=want_dx, WANT_DRES=want_dres, WANT_PQ=want_params, **blocks,
            )  # fmt: skip
        else:
            block_k = _block_k(p.split, p.block_g * p.block_c)
            totals = tuple(torch.empty((n, 1, c), device=x.device, dtype=torch.float32) for _ in range(2))
            for start, units in _waves(p):
                grid = (units * p.split,)
                bk.bwd_partial_kernel[grid](
                    grad_y, x, *inputs, part_p, part_q, c, s, num_groups, cg, p.group_blocks, p.chunk_s,
                    p.split, start, *strides, **flags, **blocks,
                )  # fmt: skip
                bk.bwd_total_kernel[(units,)](
                    part_p, part_q, *totals, c, num_groups, cg, p.group_blocks, p.split, start,
                    INT64=int64, BLOCK_G=p.block_g, BLOCK_CG=p.block_c, BLOCK_K=block_k, num_warps=4,
                )  # fmt: skip
                if want_dx or want_dres:
                    bk.bwd_dx_kernel[grid](
                        grad_y, x, *inputs, *outs, *totals, c, s, num_groups, cg, p.group_blocks,
                        p.chunk_s, p.split, count, start, *strides, **flags, WANT_DX=want_dx,
                        WANT_DRES=want_dres, **blocks,
                    )  # fmt: skip
            part_p, part_q = totals  # what the parameter gradients need: (N, 1, C)
        grads_params = (
            _param_grads(weight, bias, scale, shift, part_p, part_q, int64, want_dw, want_db, want_dscale,
                         want_dshift)
            if want_params
            else (None,) * 4
        )  # fmt: skip

    dweight, dbias, dscale, dshift = (
        _like_owner(g, owner) if g is not None else empty
        for g, owner in zip(grads_params, owners, strict=True)
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


def _param_grads(
    weight, bias, scale, shift, part_p, part_q, int64, want_dw, want_db, want_dscale, want_dshift
):
    """(dweight, dbias, dscale, dshift) from the (N, SPLIT, C) partials, contiguous, None where not wanted."""

    def out(want, owner):
        return torch.empty(owner.shape, device=owner.device, dtype=owner.dtype) if want else None

    n, split, c = part_p.shape
    dw, db = out(want_dw, weight), out(want_db, bias)
    dscale, dshift = out(want_dscale, scale), out(want_dshift, shift)
    dummy = part_p
    block_c = min(next_power_of_2(c), 128)
    block_k = _block_k(split, block_c)
    bk.bwd_param_kernel[(cdiv(c, block_c),)](
        *(t if t is not None else dummy for t in (weight, bias, scale)),
        part_p,
        part_q,
        *(t if t is not None else dummy for t in (dw, db, dscale, dshift)),
        n,
        c,
        split,
        HAS_W=weight is not None,
        HAS_B=bias is not None,
        HAS_SCALE=scale is not None,
        INT64=int64,
        WANT_DW=want_dw,
        WANT_DB=want_db,
        WANT_DSCALE=want_dscale,
        WANT_DSHIFT=want_dshift,
        BLOCK_K=block_k,
        BLOCK_C=block_c,
        num_warps=4,
    )
    return dw, db, dscale, dshift


def _like_owner(grad: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """``grad`` in its owner's dtype and strides (a copy only when the owner is not contiguous)."""
    if owner.is_contiguous() and grad.dtype == owner.dtype:
        return grad
    return torch.empty_like(owner).copy_(grad)


def _on_device(x: torch.Tensor):
    """Make x's GPU current while launching (Triton launches on the current device); a no-op on CPU."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
