"""Forward kernels: group statistics and the fused epilogue.

Addressing is described in ``tiles``. Statistics are float32: within a tile, a two-pass mean and sum of squared
deviations on registers; across tiles and programs, Chan's merge of (count, mean, M2). Nothing computes
E[x^2] - E[x]^2. All sums are of ``x - pivot``, the group's first element: when |mean| >> std, a float32 sum of
unshifted data rounds at the scale of the mean, and partial means near the mean have differences (which the
merge uses) that lost the digits carrying the variance; shifted, everything is of the order of the spread.

``INT64`` switches every offset computation to 64 bits (when an addressed tensor spans >= 2**31 elements).
"""

from __future__ import annotations

import triton
import triton.language as tl

from groupnorm.ops.triton.epilogue import activate, channel_coefficients, to_dtype
from groupnorm.ops.triton.tiles import (
    chunk_span,
    flat_group,
    group_sum,
    index_range,
    load_tile,
    split_unit,
    store_tile,
    unit_channels,
    unit_coords,
    unit_groups,
)


@triton.jit
def _pivot(X, n, g, gmask, CG, x_sn, x_sc):
    """Each group's first element. Every program of a group loads the same one, so results do not depend on
    the split."""
    return tl.load(X + n * x_sn + (g * CG) * x_sc, mask=gmask, other=0.0).to(tl.float32)


@triton.jit
def fwd_onepass_kernel(
    X, Y, W, B, SCALE, SHIFT, RES, MEAN, RSTD,
    C, S, G, CG, GROUP_BLOCKS, count, eps, unit_start,
    x_sn, x_sc, x_ss, y_sn, y_sc, y_ss, r_sn, r_sc, r_ss,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr,
):  # fmt: skip
    """One program per unit, its groups whole in one tile: x is read once (``count`` = CG * S)."""
    n, g0 = unit_coords(unit_start + tl.program_id(0), GROUP_BLOCKS, BLOCK_G, INT64)
    g, gmask = unit_groups(g0, G, BLOCK_G)
    ch, cmask = unit_channels(g0, 0, G, CG, BLOCK_G, BLOCK_CG, EVEN_CG)
    s = index_range(BLOCK_S, INT64)
    smask = s < S
    mask = smask[:, None, None] & cmask[None, :, :]
    pivot = _pivot(X, n, g, gmask, CG, x_sn, x_sc)
    x = load_tile(X, n, s, smask, mask, g0, ch, G, x_sn, x_sc, x_ss, BLOCK_G, BLOCK_CG, EVEN_CG)
    x = tl.where(mask, x - pivot[None, :, None], 0.0)
    shifted_mean = group_sum(x) / count
    diff = tl.where(mask, x - shifted_mean[None, :, None], 0.0)
    rstd = tl.rsqrt(group_sum(diff * diff) / count + eps)
    tl.store(MEAN + n * G + g, shifted_mean + pivot, mask=gmask)
    tl.store(RSTD + n * G + g, rstd, mask=gmask)

    _w, gain, offset = channel_coefficients(
        W, B, SCALE, SHIFT, n, ch, cmask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
    )
    pre = diff * (rstd[:, None] * gain)[None, :, :] + offset[None, :, :]
    if HAS_RES:
        pre += load_tile(RES, n, s, smask, mask, g0, ch, G, r_sn, r_sc, r_ss, BLOCK_G, BLOCK_CG, EVEN_CG)
    y = to_dtype(activate(pre, ACT), Y.dtype.element_ty)
    store_tile(Y, y, n, s, smask, mask, g0, ch, G, y_sn, y_sc, y_ss, BLOCK_G, BLOCK_CG, EVEN_CG)


@triton.jit
def fwd_onepass_flat_kernel(
    X, Y, W, B, SCALE, SHIFT, RES, MEAN, RSTD,
    C, S, G, CG, GROUP_LEN, count, eps,
    x_sn, r_sn, r_sc, r_ss,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr, RES_FLAT: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr,
    BLOCK_E: tl.constexpr,
):  # fmt: skip
    """:func:`fwd_onepass_kernel` for a group whose ``GROUP_LEN = CG * S`` elements are one contiguous run (NCHW):
    one program per group walks that run as a flat ``[BLOCK_E]`` tile, so loads and stores vectorize whatever S
    is (a ``[positions, channels]`` tile of S = 49 rows cannot). y has x's strides. ``RES_FLAT``: the residual
    has the same run layout (else it is addressed by its strides, element by element)."""
    pid, n, g = flat_group(G, INT64)
    e = index_range(BLOCK_E, INT64)
    emask = e < GROUP_LEN
    base = n * x_sn + g * GROUP_LEN
    pivot = tl.load(X + base).to(tl.float32)  # the group's first element, as in the other kernels
    x = tl.load(X + base + e, mask=emask, other=0.0).to(tl.float32)
    x = tl.where(emask, x - pivot, 0.0)
    shifted_mean = tl.sum(x, axis=0) / count
    diff = tl.where(emask, x - shifted_mean, 0.0)
    rstd = tl.rsqrt(tl.sum(diff * diff, axis=0) / count + eps)
    tl.store(MEAN + pid, shifted_mean + pivot)
    tl.store(RSTD + pid, rstd)

    ch = g * CG + e // S
    _w, gain, offset = channel_coefficients(
        W, B, SCALE, SHIFT, n, ch, emask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
    )
    pre = diff * (gain * rstd) + offset
    if HAS_RES:
        if RES_FLAT:
            res_at = n * r_sn + g * GROUP_LEN + e
        else:
            res_at = n * r_sn + ch * r_sc + (e % S) * r_ss
        pre += tl.load(RES + res_at, mask=emask, other=0.0).to(tl.float32)
    y = activate(pre, ACT)
    tl.store(Y + base + e, to_dtype(y, Y.dtype.element_ty), mask=emask)


@triton.jit
def _chunk_stats(
    X, n, g0, pivot, s_begin, s_end, G, CG, x_sn, x_sc, x_ss,
    INT64: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr,
    EVEN_CG: tl.constexpr,
):  # fmt: skip
    """(mean, M2) ``[BLOCK_G]`` of x - pivot over positions ``[s_begin, s_end)`` of the unit's groups, and the
    number of elements per group they cover."""
    offs_s = index_range(BLOCK_S, INT64)
    count = 0.0
    mean = tl.zeros([BLOCK_G], tl.float32)
    m2 = tl.zeros([BLOCK_G], tl.float32)
    for s0 in range(s_begin, s_end, BLOCK_S):
        s = s0 + offs_s
        smask = s < s_end
        rows = tl.minimum(s_end - s0, BLOCK_S).to(tl.float32)
        for cb in range(0, CG, BLOCK_CG):
            ch, cmask = unit_channels(g0, cb, G, CG, BLOCK_G, BLOCK_CG, EVEN_CG)
            mask = smask[:, None, None] & cmask[None, :, :]
            x = load_tile(X, n, s, smask, mask, g0, ch, G, x_sn, x_sc, x_ss, BLOCK_G, BLOCK_CG, EVEN_CG)
            x = tl.where(mask, x - pivot[None, :, None], 0.0)
            tile_count = rows * tl.minimum(CG - cb, BLOCK_CG).to(tl.float32)
            tile_mean = group_sum(x) / tile_count
            d = tl.where(mask, x - tile_mean[None, :, None], 0.0)
            tile_m2 = group_sum(d * d)
            # Chan et al.: merge (count, mean, m2) with the tile's.
            new_count = count + tile_count
            delta = tile_mean - mean
            mean += delta * (tile_count / new_count)
            m2 += tile_m2 + delta * delta * (count * (tile_count / new_count))
            count = new_count
    return mean, m2, count


@triton.jit
def fwd_partial_stats_kernel(
    X, PART,
    S, G, CG, GROUP_BLOCKS, CHUNK_S, SPLIT, unit_start,
    x_sn, x_sc, x_ss,
    INT64: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr,
):  # fmt: skip
    """Split path, pass 1: (mean, M2) of x - pivot over one chunk of ``CHUNK_S`` positions, for each group, into
    PART: one float32 buffer, each (group, chunk) slot's mean and M2 side by side (one allocation per call)."""
    n, g0, chunk = split_unit(unit_start, SPLIT, GROUP_BLOCKS, BLOCK_G, INT64)
    g, gmask = unit_groups(g0, G, BLOCK_G)
    pivot = _pivot(X, n, g, gmask, CG, x_sn, x_sc)
    s_begin, s_end = chunk_span(chunk, CHUNK_S, S)
    mean, m2, _count = _chunk_stats(
        X, n, g0, pivot, s_begin, s_end, G, CG, x_sn, x_sc, x_ss, INT64, BLOCK_S, BLOCK_G, BLOCK_CG, EVEN_CG
    )
    slot = (n * G + g) * SPLIT + chunk
    tl.store(PART + 2 * slot, mean, mask=gmask)
    tl.store(PART + 2 * slot + 1, m2, mask=gmask)


@triton.jit
def _merge_partial_stats(
    PART, grp, gmask, S, CG, CHUNK_S, SPLIT, eps,
    INT64: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_G: tl.constexpr,
):  # fmt: skip
    """(mean - pivot, rstd) ``[BLOCK_G]`` from the ``SPLIT`` partials of groups ``grp``, summed in a fixed order.

    The exact parallel form of the variance: M2 = sum_k (M2_k + n_k * (mean_k - mean)^2).
    """
    offs_k = index_range(BLOCK_K, INT64)
    acc_count = tl.zeros([BLOCK_K], tl.float32)
    acc_sum = tl.zeros([BLOCK_K, BLOCK_G], tl.float32)
    for k0 in range(0, SPLIT, BLOCK_K):
        k = k0 + offs_k
        kmask = k < SPLIT
        begin = k * CHUNK_S
        cnt = tl.where(kmask, (tl.minimum(begin + CHUNK_S, S) - begin).to(tl.float32) * CG, 0.0)
        slot = grp[None, :] * SPLIT + k[:, None]
        pm = tl.load(PART + 2 * slot, mask=kmask[:, None] & gmask[None, :], other=0.0)
        acc_count += cnt
        acc_sum += cnt[:, None] * pm
    total = tl.sum(acc_count, axis=0)
    mean = tl.sum(acc_sum, axis=0) / total
    acc_m2 = tl.zeros([BLOCK_K, BLOCK_G], tl.float32)
    for k0 in range(0, SPLIT, BLOCK_K):
        k = k0 + offs_k
        kmask = k < SPLIT
        begin = k * CHUNK_S
        cnt = tl.where(kmask, (tl.minimum(begin + CHUNK_S, S) - begin).to(tl.float32) * CG, 0.0)
        slot = grp[None, :] * SPLIT + k[:, None]
        both = kmask[:, None] & gmask[None, :]
        dev = tl.load(PART + 2 * slot, mask=both, other=0.0) - mean[None, :]
        acc_m2 += tl.load(PART + 2 * slot + 1, mask=both, other=0.0) + cnt[:, None] * dev * dev
    rstd = tl.rsqrt(tl.sum(acc_m2, axis=0) / total + eps)
    return mean, rstd


@triton.jit
def fwd_apply_kernel(
    X, Y, W, B, SCALE, SHIFT, RES, MEAN, RSTD, PART,
    C, S, G, CG, GROUP_BLOCKS, CHUNK_S, SPLIT, eps, unit_start,
    x_sn, x_sc, x_ss, y_sn, y_sc, y_ss, r_sn, r_sc, r_ss,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr, BLOCK_K: tl.constexpr,
    FUSED_STATS: tl.constexpr,
):  # fmt: skip
    """Split path, pass 2: merge the unit's partials (each program the same way) and apply one chunk.

    ``FUSED_STATS`` (``SPLIT == 1``, the looped path): the one program of a unit computes its statistics itself
    over the whole unit first (PART_* unused), then applies them: one launch instead of two.
    """
    n, g0, chunk = split_unit(unit_start, SPLIT, GROUP_BLOCKS, BLOCK_G, INT64)
    g, gmask = unit_groups(g0, G, BLOCK_G)
    grp = n * G + g
    pivot = _pivot(X, n, g, gmask, CG, x_sn, x_sc)
    if FUSED_STATS:
        shifted_mean, m2, count = _chunk_stats(
            X, n, g0, pivot, 0, S, G, CG, x_sn, x_sc, x_ss, INT64, BLOCK_S, BLOCK_G, BLOCK_CG, EVEN_CG
        )
        rstd = tl.rsqrt(m2 / count + eps)
        mean = shifted_mean + pivot
    else:
        mean, rstd = _merge_partial_stats(
            PART, grp, gmask, S, CG, CHUNK_S, SPLIT, eps, INT64, BLOCK_K, BLOCK_G
        )
        mean += pivot
    if chunk == 0:
        tl.store(MEAN + grp, mean, mask=gmask)
        tl.store(RSTD + grp, rstd, mask=gmask)

    s_begin, s_end = chunk_span(chunk, CHUNK_S, S)
    offs_s = index_range(BLOCK_S, INT64)
    for cb in range(0, CG, BLOCK_CG):
        ch, cmask = unit_channels(g0, cb, G, CG, BLOCK_G, BLOCK_CG, EVEN_CG)
        _w, gain, offset = channel_coefficients(
            W, B, SCALE, SHIFT, n, ch, cmask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
        )
        scale = (rstd[:, None] * gain)[None, :, :]
        for s0 in range(s_begin, s_end, BLOCK_S):
            s = s0 + offs_s
            smask = s < s_end
            mask = smask[:, None, None] & cmask[None, :, :]
            x = load_tile(X, n, s, smask, mask, g0, ch, G, x_sn, x_sc, x_ss, BLOCK_G, BLOCK_CG, EVEN_CG)
            pre = (x - mean[None, :, None]) * scale + offset[None, :, :]
            if HAS_RES:
                pre += load_tile(
                    RES, n, s, smask, mask, g0, ch, G, r_sn, r_sc, r_ss, BLOCK_G, BLOCK_CG, EVEN_CG
                )
            y = to_dtype(activate(pre, ACT), Y.dtype.element_ty)
            store_tile(Y, y, n, s, smask, mask, g0, ch, G, y_sn, y_sc, y_ss, BLOCK_G, BLOCK_CG, EVEN_CG)
