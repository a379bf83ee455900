"""Which kernels a call launches: the planner's work split (``planner``) made concrete. Pure Python (no torch, no
Triton), computed from shapes, strides, element sizes and the device, so every choice is testable anywhere.

A :class:`ForwardPlan` / :class:`BackwardPlan` names the kernel variant (``flat``: one program walks each group
as one contiguous run; ``tiled``: programs walk units in ``[block_s, block_g, block_c]`` tiles), the chunk
sizes, the workspaces, and every launch in order, each a :class:`Launch` with its kernel's name, its grid, the
first unit of its wave and the compile-time constants the plan decides (block shapes, ``num_warps``, 64-bit
offsets). The launchers add only what the call itself says (which optional inputs are given, which gradients
are wanted, the activation) and the tensors.

Example::

    >>> from groupnorm.ops.triton.geometry import TensorLayout
    >>> h100 = DeviceSpec(sm_count=132, l2_bytes=50 * 2**20)
    >>> p = forward_plan(TensorLayout.contiguous((1, 512, 64, 64), 2), 32, h100)
    >>> p.variant, [(launch.kernel, launch.grid) for launch in p.launches]
    ('tiled', [('fwd_partial_stats_kernel', (512,)), ('fwd_apply_kernel', (512,))])
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from groupnorm.ops.triton.geometry import Groups, TensorLayout, flat_strides, group_shape, is_run, needs_int64
from groupnorm.ops.triton.planner import DeviceSpec, Plan, Tuning, cdiv, next_power_of_2, plan

NO_STRIDES = (0, 0, 0)  # an absent tensor's (N, C, S) strides: never dereferenced


@dataclass(frozen=True)
class Launch:
    """One kernel launch: ``kernel[grid](...)`` over the units from ``start`` on, with the plan's constants."""

    kernel: str  # a kernel of forward_kernels / backward_kernels
    grid: tuple[int, ...]
    start: int  # first unit of this launch's wave (0 when one wave covers all)
    meta: dict[str, int | bool]  # the compile-time constants the plan decides, and num_warps


@dataclass(frozen=True)
class ForwardPlan:
    """How a forward call runs (see :func:`forward_plan`)."""

    work: Plan  # the work split
    groups: Groups
    variant: str  # "flat" or "tiled"
    int64: bool  # 64-bit offsets
    x_strides: tuple[int, int, int]  # (N, C, S); y has x's
    residual_strides: tuple[int, int, int]
    block_k: int  # partial statistics merged per step (split path)
    partials: int  # float32 workspace elements: (mean, M2) per program of the split path, 0 without one
    launches: tuple[Launch, ...]

    @property
    def launch_count(self) -> int:
        return len(self.launches)


@dataclass(frozen=True)
class BackwardPlan:
    """How a backward call runs (see :func:`backward_plan`)."""

    work: Plan
    groups: Groups
    variant: str  # "flat" or "tiled"
    int64: bool
    x_strides: tuple[int, int, int]  # dx has x's
    grad_strides: tuple[int, int, int]
    residual_strides: tuple[int, int, int]
    flat_chunk: int  # elements of a group a flat program holds at once (a power of two)
    block_k: int  # per-program channel sums merged per step (split path)
    partial_shape: tuple[int, int, int]  # (N, split, C) float32, one buffer each for the sums P and Q
    launches: tuple[Launch, ...]  # none when no gradient is wanted

    @property
    def launch_count(self) -> int:
        return len(self.launches)


def work_plan(
    x: TensorLayout, num_groups: int, reread_bytes_per_elem: int, device: DeviceSpec, tuning: Tuning | None
) -> Plan:
    """The work split (``planner.plan``) for an input of layout ``x``, which must collapse to (N, C, S)."""
    groups = group_shape(x.shape, num_groups)
    strides = _strides(x)
    return plan(
        groups.batch, num_groups, groups.per_group, groups.spatial, reread_bytes_per_elem, device, tuning,
        channels_innermost=strides[1] == 1,
    )  # fmt: skip


def forward_plan(
    x: TensorLayout,
    num_groups: int,
    device: DeviceSpec,
    tuning: Tuning | None = None,
    residual: TensorLayout | None = None,
) -> ForwardPlan:
    """The forward's launches for input ``x`` and, when given, a ``residual`` of the layout the kernels address.

    Flat when one program holds a group and groups are contiguous runs (NCHW): its accesses vectorize for any S.
    Otherwise tiled: one pass, looped (one program per unit, statistics then apply) or split (per wave,
    partial statistics then apply).
    """
    groups = group_shape(x.shape, num_groups)
    p = work_plan(x, num_groups, x.element_size, device, tuning)
    xs = _strides(x)
    rs = _strides(residual) if residual is not None else NO_STRIDES
    int64 = needs_int64(tuning is not None and tuning.force_int64, x, residual)
    blocks = _blocks(p, groups, int64)
    block_k = min(next_power_of_2(p.split), max(1, next_power_of_2(4096 // p.block_g)))
    flat = p.one_pass and p.block_g == 1 and is_run(xs, groups.spatial)
    if flat:
        meta = {
            "INT64": int64,
            "RES_FLAT": residual is not None and is_run(rs, groups.spatial),
            "BLOCK_E": next_power_of_2(groups.per_group * groups.spatial),
            "num_warps": p.num_warps,
        }
        launches = (Launch("fwd_onepass_flat_kernel", (p.units,), 0, meta),)
    elif p.one_pass:
        launches = (Launch("fwd_onepass_kernel", (p.units,), 0, blocks),)
    elif p.split == 1:  # looped: statistics then apply in the same program
        launches = (Launch("fwd_apply_kernel", (p.units,), 0, {**blocks, "BLOCK_K": 1, "FUSED_STATS": True}),)
    else:
        apply = {**blocks, "BLOCK_K": block_k, "FUSED_STATS": False}
        launches = tuple(
            Launch(kernel, (units * p.split,), start, dict(meta))
            for start, units in _waves(p)
            for kernel, meta in (("fwd_partial_stats_kernel", blocks), ("fwd_apply_kernel", apply))
        )
    split_path = not (p.one_pass or p.split == 1)
    return ForwardPlan(
        work=p, groups=groups, variant="flat" if flat else "tiled", int64=int64, x_strides=xs,
        residual_strides=rs, block_k=block_k,
        partials=2 * groups.batch * num_groups * p.split if split_path else 0, launches=launches,
    )  # fmt: skip


def backward_plan(
    grad_y: TensorLayout,
    x: TensorLayout,
    num_groups: int,
    device: DeviceSpec,
    tuning: Tuning | None = None,
    residual: TensorLayout | None = None,
    *,
    activation: bool = False,
    input_grads: bool = True,
    param_grads: bool = True,
) -> BackwardPlan:
    """The backward's launches; ``grad_y`` and ``residual`` of the layouts the kernels address.

    ``activation``: the epilogue has one (the kernels then re-read the residual to recompute its input).
    ``input_grads``: dx or dresidual is wanted; ``param_grads``: a gradient of weight, bias, scale or shift is.
    Nothing wanted, nothing launched. Flat when one program holds a group and groups are contiguous runs in x
    and grad_y (dx has x's strides); it walks a group in chunks of ``flat_chunk`` elements.
    """
    tuning = tuning or Tuning()
    groups = group_shape(x.shape, num_groups)
    # The backward holds x and grad_y (and x_hat, dp, the residual) per element: half the forward's tiles and
    # units keep it within registers (at full size ptxas spills on sm_90 with a residual and an activation).
    halved = replace(
        tuning,
        max_onepass_elems=max(1, tuning.max_onepass_elems // 2),
        tile_elems=max(1, tuning.tile_elems // 2),
    )
    reread = x.element_size + grad_y.element_size
    if residual is not None and activation:
        reread += residual.element_size
    p = work_plan(x, num_groups, reread, device, halved)
    xs, gs = _strides(x), _strides(grad_y)
    rs = _strides(residual) if residual is not None else NO_STRIDES
    int64 = needs_int64(tuning.force_int64, x, grad_y, residual)
    blocks = _blocks(p, groups, int64)
    group_len = groups.per_group * groups.spatial
    per_chunk = max(1, tuning.flat_backward_chunk_bytes // x.element_size)
    flat_chunk = 1 << (per_chunk.bit_length() - 1)  # a power of two, for tl.arange
    block_k = min(next_power_of_2(p.split), max(1, next_power_of_2(4096 // (p.block_g * p.block_c))))
    flat = p.one_pass and p.block_g == 1 and is_run(xs, groups.spatial) and is_run(gs, groups.spatial)
    if flat:
        meta = {
            "INT64": int64,
            "RES_FLAT": residual is not None and is_run(rs, groups.spatial),
            "BLOCK_E": min(next_power_of_2(group_len), flat_chunk),
            "ONE_CHUNK": group_len <= flat_chunk,
            "num_warps": min(16, max(p.num_warps, next_power_of_2(group_len) // 256)),
        }
        main = (Launch("bwd_onepass_flat_kernel", (p.units,), 0, meta),)
    elif p.one_pass:
        main = (Launch("bwd_onepass_kernel", (p.units,), 0, blocks),)
    elif p.split == 1:  # looped: one program per unit sums P and Q over it, then writes dx
        main = (Launch("bwd_dx_kernel", (p.units,), 0, {**blocks, "FUSED_PQ": True}),)
    else:
        main = tuple(_split_backward(p, blocks, block_k, int64, input_grads))
    # The main launches also leave the per-channel sums the parameter gradients are reduced from.
    launches = main if input_grads or param_grads else ()
    if param_grads:
        launches += (_param_launch(groups, int64),)
    return BackwardPlan(
        work=p, groups=groups, variant="flat" if flat else "tiled", int64=int64, x_strides=xs, grad_strides=gs,
        residual_strides=rs, flat_chunk=flat_chunk, block_k=block_k,
        partial_shape=(groups.batch, p.split, groups.channels), launches=launches,
    )  # fmt: skip


def _split_backward(p: Plan, blocks: dict, block_k: int, int64: bool, input_grads: bool):
    """Per wave: per-chunk sums P and Q, their totals per channel, then dx (when wanted) from the totals."""
    total = {"INT64": int64, "BLOCK_G": p.block_g, "BLOCK_CG": p.block_c, "EVEN_CG": blocks["EVEN_CG"],
             "BLOCK_K": block_k, "num_warps": 4}  # fmt: skip
    for start, units in _waves(p):
        grid = (units * p.split,)
        yield Launch("bwd_partial_kernel", grid, start, dict(blocks))
        yield Launch("bwd_total_kernel", (units,), start, dict(total))
        if input_grads:
            yield Launch("bwd_dx_kernel", grid, start, {**blocks, "FUSED_PQ": False})


def _param_launch(groups: Groups, int64: bool) -> Launch:
    """Parameter gradients: programs over channel blocks, each summing all samples in [BLOCK_N, BLOCK_C] tiles."""
    block_c = min(next_power_of_2(groups.channels), 64)
    meta = {
        "INT64": int64,
        "BLOCK_N": min(next_power_of_2(groups.batch), max(1, 2048 // block_c)),
        "BLOCK_C": block_c,
        "num_warps": 4,
    }
    return Launch("bwd_param_kernel", (cdiv(groups.channels, block_c),), 0, meta)


def _strides(t: TensorLayout) -> tuple[int, int, int]:
    strides = flat_strides(t.shape, t.stride)
    if strides is None:
        raise ValueError(
            f"the kernels address (N, C, S) tensors; shape {t.shape}, stride {t.stride} is not one"
        )
    return strides


def _blocks(p: Plan, groups: Groups, int64: bool) -> dict[str, int | bool]:
    """The tiled kernels' constants."""
    return {
        "INT64": int64,
        "BLOCK_S": p.block_s,
        "BLOCK_G": p.block_g,
        "BLOCK_CG": p.block_c,
        "EVEN_CG": p.block_c == groups.per_group,
        "num_warps": p.num_warps,
    }


def _waves(p: Plan):
    """(first unit, number of units) of each wave."""
    for start in range(0, p.units, p.units_per_wave):
        yield start, min(p.units_per_wave, p.units - start)
