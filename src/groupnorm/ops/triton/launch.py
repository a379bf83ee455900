"""Launchers: the op's forward/backward signatures on top of the Triton kernels.

They take exactly the registered ops' arguments (see ``groupnorm.ops.op``), plus two keywords the tests use to
force every path on any machine: ``device`` (SM count and L2 size for the planner) and ``tuning``. They run on
CUDA tensors and, with ``TRITON_INTERPRET=1`` set before this module is imported, on CPU tensors.

No host synchronization and no memset: workspaces are ``torch.empty`` and every slot is written before it is read,
so the launchers are safe to capture in a CUDA graph.

Host cost: what a call needs besides its tensors (validation, plan, grids, strides, flags) is computed once per
layout key (shapes, strides, dtypes, which optional inputs are given, device, tuning) and kept in an LRU cache
(:func:`forward_launch`, :func:`backward_launch`); the op has validated the arguments already, so a cached call
only allocates its outputs and launches.

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
# Launch descriptions are kept per distinct call layout: a model calls the op with a handful of layouts, so after
# the first call of each the launcher only allocates outputs and launches (validation and planning happen once).
_CACHE_SIZE = 1024
# The most bytes of x a flat backward program holds at once (16 warps: 8 bf16 or 4 float32 elements per
# thread): ptxas keeps that within 128 registers without spilling (scripts/triton_compile_check.py: 99 for a bf16
# 7x7 group); a whole bf16 14x14 group of 32 channels (6,272 elements) at 16 per thread spilled, and so did a
# float32 7x7 group at 8, so larger groups are walked in chunks of this size.
FLAT_BACKWARD_CHUNK_BYTES = 8192


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


def supports(x: torch.Tensor) -> bool:
    """Whether the Triton kernels take ``x`` (the registry's per-call test; decided once per layout)."""
    return _supports_layout(x.shape, x.stride(), x.dtype)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _supports_layout(shape: torch.Size, stride: tuple[int, ...], dtype: torch.dtype) -> bool:
    if dtype not in SUPPORTED_DTYPES or not 2 <= len(shape) <= 5 or math.prod(shape) == 0:
        return False
    t = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    return _is_dense(t) and flat_strides(t) is not None


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
    assert strides is not None  # a layout the kernels address (see _dense_meta)
    return strides


def _is_run(strides: tuple[int, int, int] | None, spatial: int) -> bool:
    """Whether (N, C, S) ``strides`` lay each sample's channels out as one run of C * S elements (NCHW)."""
    return strides is not None and strides[2] == 1 and strides[1] == spatial


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


def _layout(t: torch.Tensor | None) -> tuple | None:
    """What a launch depends on of a tensor, as a hashable key: shape, strides, dtype (None when absent)."""
    return None if t is None else (t.shape, t.stride(), t.dtype)


def _cuda_index(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def _device_context(index: int | None):
    """Make GPU ``index`` current while launching (Triton launches on the current device); a no-op on CPU and when
    it already is."""
    if index is None or torch.cuda.current_device() == index:
        return contextlib.nullcontext()
    return torch.cuda.device(index)


def _residual_needs_copy(layout: tuple | None) -> bool:
    """Whether a tensor of ``layout`` must be copied to contiguous before the kernels can address it."""
    return layout is not None and not _supports_layout(*layout)


def _meta_like(layout: tuple) -> torch.Tensor:
    """A storage-less tensor with ``layout``'s shape, strides and dtype, for planning without the data."""
    shape, stride, dtype = layout
    return torch.empty_strided(shape, stride, dtype=dtype, device="meta")


def _dense_meta(layout: tuple | None) -> torch.Tensor | None:
    """The meta twin of the tensor the kernels address for one of ``layout`` (a contiguous copy for odd ones)."""
    if layout is None:
        return None
    t = _meta_like(layout)
    return t.contiguous() if _residual_needs_copy(layout) else t


class ForwardLaunch:
    """Everything a forward call of one layout needs besides the tensors: plan, grids, strides, flags."""

    __slots__ = ("plan", "n", "num_groups", "scalars", "strides", "x_strides", "flags", "blocks", "block_k",
                 "waves", "part_len", "res_copy", "cuda_index", "kw", "flat")  # fmt: skip

    def launches(self) -> int:
        """Kernel launches per call."""
        return 1 if self.plan.one_pass or self.plan.split == 1 else 2 * len(self.waves)


@functools.lru_cache(maxsize=_CACHE_SIZE)
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
    """The launch description of a forward call: ``x``/``residual`` are :func:`_layout` keys, ``has`` says which of
    weight, bias, scale, shift are given. Validates the layout (once per key: the op checked the arguments)."""
    xm = _meta_like(x)
    n, c, s, cg = _check(xm, num_groups)
    res_m = _dense_meta(residual)
    lp = ForwardLaunch()
    lp.plan = p = plan_for(xm, num_groups, xm.element_size(), device or _spec_for(x_device), tuning)
    lp.n, lp.num_groups = n, num_groups
    has_w, has_b, has_scale, has_shift = has
    lp.flags = dict(
        HAS_W=has_w, HAS_B=has_b, HAS_SCALE=has_scale, HAS_SHIFT=has_shift, HAS_RES=residual is not None,
        ACT=ACTIVATION_CODES[activation], INT64=_needs_int64(tuning, xm, res_m),
    )  # fmt: skip
    lp.blocks = dict(
        BLOCK_S=p.block_s,
        BLOCK_G=p.block_g,
        BLOCK_CG=p.block_c,
        EVEN_CG=p.block_c == cg,
        num_warps=p.num_warps,
    )
    lp.x_strides = flat_strides(xm)
    lp.strides = (*lp.x_strides, *lp.x_strides, *_strides_or_zero(res_m))  # y has x's strides
    lp.scalars = (c, s, num_groups, cg, p.group_blocks)
    lp.block_k = _block_k(p.split, p.block_g)
    lp.waves = tuple(_waves(p))
    lp.part_len = n * num_groups * p.split
    lp.res_copy = _residual_needs_copy(residual)
    lp.cuda_index = _cuda_index(x_device)
    # One pass over groups that are contiguous runs (NCHW): the flat kernel, whose accesses vectorize for any S.
    lp.flat = p.one_pass and p.block_g == 1 and _is_run(lp.x_strides, s)
    flags, blocks = lp.flags, lp.blocks
    res_flat = res_m is not None and _is_run(flat_strides(res_m), s)
    lp.kw = {  # each kernel's keyword arguments, merged once
        "flat": {**flags, "RES_FLAT": res_flat, "BLOCK_E": next_power_of_2(cg * s), "num_warps": p.num_warps},
        "onepass": {**flags, **blocks},
        "looped": {**flags, **blocks, "BLOCK_K": 1, "FUSED_STATS": True},
        "stats": {"INT64": flags["INT64"], **blocks},
        "apply": {**flags, **blocks, "BLOCK_K": lp.block_k, "FUSED_STATS": False},
    }
    return lp


def _spec_for(x_device: torch.device) -> DeviceSpec:
    if x_device.type == "cuda":
        return _cuda_device_spec(
            x_device.index if x_device.index is not None else torch.cuda.current_device()
        )
    return INTERPRETER_DEVICE


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
    lp = forward_launch(_layout(x), x.device, num_groups, activation, has, _layout(residual), device, tuning)
    if lp.res_copy:
        residual = residual.contiguous()
    # x is dense (checked once per layout), so its strides are what empty_like would give; empty_strided skips
    # re-deriving them on every call.
    y = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
    mean = torch.empty((lp.n, num_groups), device=x.device, dtype=torch.float32)
    rstd = torch.empty((lp.n, num_groups), device=x.device, dtype=torch.float32)
    # weight/bias (C,) and scale/shift (N, C) are addressed as contiguous; mean stands in for absent ones (never
    # dereferenced).
    optional = [mean if t is None else t.contiguous() for t in (weight, bias, scale, shift)] + [
        mean if residual is None else residual
    ]
    p = lp.plan
    with _device_context(lp.cuda_index):
        if lp.flat:
            _c, s, _g, cg, _gb = lp.scalars
            fk.fwd_onepass_flat_kernel[(p.units,)](
                x, y, *optional, mean, rstd, *lp.scalars[:4], cg * s, float(cg * s), eps, lp.x_strides[0],
                *lp.strides[6:], **lp.kw["flat"],
            )  # fmt: skip
            return y, mean, rstd
        if p.one_pass:
            fk.fwd_onepass_kernel[(p.units,)](
                x, y, *optional, mean, rstd, *lp.scalars, float(lp.scalars[3] * lp.scalars[1]), eps, 0,
                *lp.strides, **lp.kw["onepass"],
            )  # fmt: skip
            return y, mean, rstd
        if p.split == 1:  # looped: one program per unit computes its statistics, then applies them
            fk.fwd_apply_kernel[(p.units,)](
                x, y, *optional, mean, rstd, mean, *lp.scalars, p.chunk_s, 1, eps, 0, *lp.strides,
                **lp.kw["looped"],
            )  # fmt: skip
            return y, mean, rstd
        part = torch.empty(2 * lp.part_len, device=x.device, dtype=torch.float32)  # (mean, M2) per slot
        _c, s, g, cg, group_blocks = lp.scalars
        for start, units in lp.waves:
            grid = (units * p.split,)
            fk.fwd_partial_stats_kernel[grid](
                x, part, s, g, cg, group_blocks, p.chunk_s, p.split, start, *lp.x_strides,
                **lp.kw["stats"],
            )  # fmt: skip
            fk.fwd_apply_kernel[grid](
                x, y, *optional, mean, rstd, part,
                *lp.scalars, p.chunk_s, p.split, eps, start, *lp.strides,
                **lp.kw["apply"],
            )  # fmt: skip
    return y, mean, rstd


class BackwardLaunch:
    """Everything a backward call of one layout needs besides the tensors."""

    __slots__ = ("plan", "n", "c", "scalars", "count", "strides", "flags", "blocks", "block_k", "waves",
                 "want", "grad_copy", "res_copy", "int64", "param", "cuda_index", "part_shape", "kw",
                 "flat")  # fmt: skip

    def launches(self) -> int:
        """Kernel launches per call."""
        want_dx, _dw, _db, want_dres, _ds, _dsh, want_params = self.want
        if not (want_dx or want_dres or want_params):
            return 0
        looped = self.plan.one_pass or self.plan.split == 1
        main = 1 if looped else len(self.waves) * (3 if want_dx or want_dres else 2)
        return main + (1 if want_params else 0)


@functools.lru_cache(maxsize=_CACHE_SIZE)
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
    xm = _meta_like(x)
    n, c, s, cg = _check(xm, num_groups)
    has_w, has_b, has_scale, has_shift = has
    want_dx, want_dw, want_db, want_dres, want_dscale, want_dshift = output_mask
    want_dw &= has_w
    want_db &= has_b
    want_dres &= residual is not None
    want_dscale &= has_scale
    want_dshift &= has_shift
    want_params = want_dw or want_db or want_dscale or want_dshift
    gm, res_m = _dense_meta(grad_y), _dense_meta(residual)
    act = ACTIVATION_CODES[activation]

    tuning = tuning or Tuning()
    # The backward holds x and grad_y (and x_hat, dp, the residual) per element: half the forward's tiles and
    # units keep it within registers (at full size ptxas spills on sm_90 with a residual and an activation).
    bwd_tuning = replace(
        tuning,
        max_onepass_elems=max(1, tuning.max_onepass_elems // 2),
        tile_elems=max(1, tuning.tile_elems // 2),
    )
    reread = xm.element_size() + gm.element_size()
    if res_m is not None and act:
        reread += res_m.element_size()
    lp = BackwardLaunch()
    lp.plan = p = plan_for(xm, num_groups, reread, device or _spec_for(x_device), bwd_tuning)
    lp.n, lp.c = n, c
    lp.int64 = _needs_int64(tuning, xm, gm, res_m)
    lp.flags = dict(
        HAS_W=has_w, HAS_B=has_b, HAS_SCALE=has_scale, HAS_SHIFT=has_shift, HAS_RES=residual is not None,
        ACT=act, INT64=lp.int64,
    )  # fmt: skip
    lp.blocks = dict(
        BLOCK_S=p.block_s,
        BLOCK_G=p.block_g,
        BLOCK_CG=p.block_c,
        EVEN_CG=p.block_c == cg,
        num_warps=p.num_warps,
    )
    lp.strides = (*flat_strides(xm), *flat_strides(gm), *_strides_or_zero(res_m))
    lp.scalars = (c, s, num_groups, cg, p.group_blocks)
    lp.count = float(cg * s)
    # One pass over groups that are contiguous runs in x and grad_y (dx has x's strides): the flat kernel.
    lp.flat = p.one_pass and p.block_g == 1 and _is_run(flat_strides(xm), s) and _is_run(flat_strides(gm), s)
    lp.part_shape = (n, p.split, c)
    lp.block_k = _block_k(p.split, p.block_g * p.block_c)
    lp.waves = tuple(_waves(p))
    lp.want = (want_dx, want_dw, want_db, want_dres, want_dscale, want_dshift, want_params)
    lp.grad_copy = _residual_needs_copy(grad_y)
    lp.res_copy = _residual_needs_copy(residual)
    # Parameter gradients: programs over channel blocks, each summing all samples in [BLOCK_N, BLOCK_C] tiles.
    block_c = min(next_power_of_2(c), 64)
    lp.param = dict(grid=(cdiv(c, block_c),))
    lp.cuda_index = _cuda_index(x_device)
    flags, blocks = lp.flags, lp.blocks
    wants = dict(WANT_DX=want_dx, WANT_DRES=want_dres)
    per_chunk = max(1, FLAT_BACKWARD_CHUNK_BYTES // xm.element_size())
    flat_chunk = 1 << (per_chunk.bit_length() - 1)  # a power of two, for tl.arange
    lp.kw = {  # each kernel's keyword arguments, merged once
        "onepass": {**flags, **wants, "WANT_PQ": want_params, **blocks},
        "flat": {
            **flags,
            **wants,
            "WANT_PQ": want_params,
            "RES_FLAT": res_m is not None and _is_run(flat_strides(res_m), s),
            "BLOCK_E": min(next_power_of_2(cg * s), flat_chunk),
            "ONE_CHUNK": cg * s <= flat_chunk,
            "num_warps": min(16, max(p.num_warps, next_power_of_2(cg * s) // 256)),
        },
        "looped": {**flags, **wants, **blocks, "FUSED_PQ": True},
        "partial": {**flags, **blocks},
        "total": dict(
            INT64=lp.int64,
            BLOCK_G=p.block_g,
            BLOCK_CG=p.block_c,
            EVEN_CG=blocks["EVEN_CG"],
            BLOCK_K=lp.block_k,
            num_warps=4,
        ),  # fmt: skip
        "dx": {**flags, **wants, **blocks, "FUSED_PQ": False},
        "param": dict(
            HAS_W=has_w,
            HAS_B=has_b,
            HAS_SCALE=has_scale,
            INT64=lp.int64,
            WANT_DW=want_dw,
            WANT_DB=want_db,
            WANT_DSCALE=want_dscale,
            WANT_DSHIFT=want_dshift,
            BLOCK_N=min(next_power_of_2(n), max(1, 2048 // block_c)),
            BLOCK_C=block_c,
            num_warps=4,
        ),  # fmt: skip
    }
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
        _layout(grad_y), _layout(x), x.device, num_groups, activation, has, _layout(residual),
        tuple(bool(m) for m in output_mask), device, tuning,
    )  # fmt: skip
    want_dx, want_dw, want_db, want_dres, want_dscale, want_dshift, want_params = lp.want
    empty = torch.empty(0, device=x.device, dtype=x.dtype)
    if not (want_dx or want_dres or want_params):
        return (empty,) * 6

    owners = (weight, bias, scale, shift)
    weight, bias, scale, shift = _contig(weight), _contig(bias), _contig(scale), _contig(shift)
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

    p = lp.plan
    c = lp.c
    part_p = torch.empty(lp.part_shape, device=x.device, dtype=torch.float32)
    part_q = torch.empty(lp.part_shape, device=x.device, dtype=torch.float32)
    dummy = part_p  # stands in for absent optional tensors; never dereferenced
    inputs = [t if t is not None else dummy for t in (weight, bias, scale, shift, res_k, mean, rstd)]
    outs = [t if t is not None else dummy for t in (dx, dres)]
    with _device_context(lp.cuda_index):
        if lp.flat:
            _c, s, _g, cg, _gb = lp.scalars
            x_sn, _x_sc, _x_ss, d_sn, _d_sc, _d_ss, *res_strides = lp.strides
            bk.bwd_onepass_flat_kernel[(p.units,)](
                grad_y, x, *inputs, *outs, part_p, part_q, *lp.scalars[:4], cg * s, lp.count,
                x_sn, d_sn, *res_strides, **lp.kw["flat"],
            )  # fmt: skip
        elif p.one_pass:
            bk.bwd_onepass_kernel[(p.units,)](
                grad_y, x, *inputs, *outs, part_p, part_q, *lp.scalars, lp.count, 0,
                *lp.strides, **lp.kw["onepass"],
            )  # fmt: skip
        elif p.split == 1:  # looped: one program per unit sums P and Q over it, then writes dx
            bk.bwd_dx_kernel[(p.units,)](
                grad_y, x, *inputs, *outs, part_p, part_q, *lp.scalars, p.chunk_s, 1, lp.count, 0, c,
                *lp.strides, **lp.kw["looped"],
            )  # fmt: skip
        else:
            _c, s, g, cg, group_blocks = lp.scalars
            for start, units in lp.waves:
                grid = (units * p.split,)
                bk.bwd_partial_kernel[grid](
                    grad_y, x, *inputs, part_p, part_q, *lp.scalars, p.chunk_s,
                    p.split, start, *lp.strides, **lp.kw["partial"],
                )  # fmt: skip
                bk.bwd_total_kernel[(units,)](
                    part_p, part_q, c, g, cg, group_blocks, p.split, start,
                    **lp.kw["total"],
                )  # fmt: skip
                if want_dx or want_dres:
                    bk.bwd_dx_kernel[grid](
                        grad_y, x, *inputs, *outs, part_p, part_q, *lp.scalars,
                        p.chunk_s, p.split, lp.count, start, p.split * c, *lp.strides, **lp.kw["dx"],
                    )  # fmt: skip
        grads_params = (
            _param_grads(lp, weight, bias, scale, shift, part_p, part_q, bk) if want_params else (None,) * 4
        )

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


def _param_grads(lp: BackwardLaunch, weight, bias, scale, shift, part_p, part_q, bk):
    """(dweight, dbias, dscale, dshift) from the per-sample channel sums in chunk 0's slots of the (N, SPLIT, C)
    buffers, contiguous, None where not wanted."""
    _dx, want_dw, want_db, _dres, want_dscale, want_dshift, _params = lp.want

    def out(want, owner):
        return torch.empty(owner.shape, device=owner.device, dtype=owner.dtype) if want else None

    n, split, c = part_p.shape  # the totals are chunk 0's slots: sample n's at n * split * c
    dw, db = out(want_dw, weight), out(want_db, bias)
    dscale, dshift = out(want_dscale, scale), out(want_dshift, shift)
    dummy = part_p
    bk.bwd_param_kernel[lp.param["grid"]](
        *(t if t is not None else dummy for t in (weight, bias, scale)),
        part_p,
        part_q,
        *(t if t is not None else dummy for t in (dw, db, dscale, dshift)),
        n,
        c,
        split * c,
        **lp.kw["param"],
    )
    return dw, db, dscale, dshift


def _like_owner(grad: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """``grad`` in its owner's dtype and strides (a copy only when the owner is not contiguous)."""
    if owner.is_contiguous() and grad.dtype == owner.dtype:
        return grad
    return torch.empty_like(owner).copy_(grad)


def launch_summary(
    x: torch.Tensor,
    num_groups: int,
    activation: str = "none",
    *,
    affine: bool = True,
    device: DeviceSpec | None = None,
    tuning: Tuning | None = None,
) -> dict[str, object]:
    """What the launchers do for input ``x``: the forward's and backward's plans and kernel launches per call.

    The backward counted is the one for dx, dweight and dbias (``affine``) or dx alone. ``x`` may be a ``meta``
    tensor; nothing is launched.

    Example::

        >>> from groupnorm.ops.triton.planner import DeviceSpec
        >>> x = torch.empty(32, 2048, 7, 7, device="meta")
        >>> s = launch_summary(x, 32, "relu", device=DeviceSpec(sm_count=132, l2_bytes=50 * 2**20))
        >>> s["forward_launches"], s["backward_launches"]
        (1, 2)
    """
    has = (affine, affine, False, False)
    fwd = forward_launch(_layout(x), x.device, num_groups, activation, has, None, device, tuning)
    mask = (True, affine, affine, False, False, False)
    bwd = backward_launch(
        _layout(x), _layout(x), x.device, num_groups, activation, has, None, mask, device, tuning
    )
    return {
        "forward_plan": fwd.plan.describe(),
        "forward_launches": fwd.launches(),
        "backward_plan": bwd.plan.describe(),
        "backward_launches": bwd.launches(),
    }
