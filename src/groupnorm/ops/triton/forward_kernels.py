"""Forward kernels: group statistics and the fused epilogue.

Every tensor is addressed as (N, C, S) with its own strides (sample, channel, spatial), which covers contiguous,
channels_last and channels_last_3d in place: the stride that is 1 is specialized by Triton, so the loads are
coalesced along whichever axis is contiguous. A program works on ``[BLOCK_S, BLOCK_C]`` tiles of one group
(sample ``n``, channels ``g*CG .. g*CG+CG``).

Statistics are float32. Within a tile: a two-pass mean / sum of squared deviations on registers; across tiles and
programs: Chan's merge of (count, mean, M2), so nothing computes E[x^2] - E[x]^2.

``INT64`` switches every offset computation to 64 bits (used when an addressed tensor has >= 2**31 elements).
"""

from __future__ import annotations

import triton
import triton.language as tl

from groupnorm.ops.triton.epilogue import activate, channel_coefficients, to_dtype


@triton.jit
def _group_of(grp, G, CG, INT64: tl.constexpr):
    if INT64:
        grp = grp.to(tl.int64)
    return grp, grp // G, (grp % G) * CG


@triton.jit
def _apply_tile(
    X,
    Y,
    RES,
    n,
    s,
    ch,
    mask,
    mean,
    rstd,
    gain,
    offset,
    x_sn,
    x_sc,
    x_ss,
    y_sn,
    y_sc,
    y_ss,
    r_sn,
    r_sc,
    r_ss,
    HAS_RES: tl.constexpr,
    ACT: tl.constexpr,
):
    x = tl.load(X + n * x_sn + s[:, None] * x_ss + ch[None, :] * x_sc, mask=mask, other=0.0).to(tl.float32)
    pre = (x - mean) * (rstd * gain)[None, :] + offset[None, :]
    if HAS_RES:
        res = tl.load(RES + n * r_sn + s[:, None] * r_ss + ch[None, :] * r_sc, mask=mask, other=0.0)
        pre = pre + res.to(tl.float32)
    y = activate(pre, ACT)
    tl.store(
        Y + n * y_sn + s[:, None] * y_ss + ch[None, :] * y_sc, to_dtype(y, Y.dtype.element_ty), mask=mask
    )


@triton.jit
def fwd_onepass_kernel(
    X,
    Y,
    W,
    B,
    SCALE,
    SHIFT,
    RES,
    MEAN,
    RSTD,
    C,
    S,
    G,
    CG,
    count,
    eps,
    group_start,
    x_sn,
    x_sc,
    x_ss,
    y_sn,
    y_sc,
    y_ss,
    r_sn,
    r_sc,
    r_ss,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr,
    ACT: tl.constexpr,
    INT64: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """One program per group, the whole group in one tile: x is read once (``count`` = CG * S)."""
    grp, n, c0 = _group_of(group_start + tl.program_id(0), G, CG, INT64)
    s = tl.arange(0, BLOCK_S)
    if INT64:
        s = s.to(tl.int64)
    cl = tl.arange(0, BLOCK_C)
    cmask = cl < CG
    ch = c0 + cl
    mask = (s < S)[:, None] & cmask[None, :]
    x = tl.load(X + n * x_sn + s[:, None] * x_ss + ch[None, :] * x_sc, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x) / count
    diff = tl.where(mask, x - mean, 0.0)
    rstd = tl.rsqrt(tl.sum(diff * diff) / count + eps)
    tl.store(MEAN + grp, mean)
    tl.store(RSTD + grp, rstd)

    _w, gain, offset = channel_coefficients(
        W, B, SCALE, SHIFT, n, ch, cmask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
    )
    pre = diff * (rstd * gain)[None, :] + offset[None, :]
    if HAS_RES:
        res = tl.load(RES + n * r_sn + s[:, None] * r_ss + ch[None, :] * r_sc, mask=mask, other=0.0)
        pre = pre + res.to(tl.float32)
    y = activate(pre, ACT)
    tl.store(
        Y + n * y_sn + s[:, None] * y_ss + ch[None, :] * y_sc, to_dtype(y, Y.dtype.element_ty), mask=mask
    )


@triton.jit
def _pivot(X, n, c0, x_sn, x_sc):
    """The group's first element. Partial statistics are of x - pivot: when |mean| >> std, partial means of
    unshifted data are float32 numbers near the mean whose differences (used by the merge) have lost the digits
    that carry the variance; shifted, they are of the order of the spread. Every program of a group loads the
    same pivot, so the merged result does not depend on the split."""
    return tl.load(X + n * x_sn + c0 * x_sc).to(tl.float32)


@triton.jit
def fwd_partial_stats_kernel(
    X,
    PART_MEAN,
    PART_M2,
    S,
    G,
    CG,
    CHUNK_S,
    SPLIT,
    group_start,
    x_sn,
    x_sc,
    x_ss,
    INT64: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Split path, pass 1: (mean, M2) of x - pivot over one chunk of ``CHUNK_S`` spatial positions of one group."""
    pid = tl.program_id(0)
    grp, n, c0 = _group_of(group_start + pid // SPLIT, G, CG, INT64)
    chunk = pid % SPLIT
    s_begin = chunk * CHUNK_S
    s_end = tl.minimum(s_begin + CHUNK_S, S)
    offs_s = tl.arange(0, BLOCK_S)
    if INT64:
        offs_s = offs_s.to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    pivot = _pivot(X, n, c0, x_sn, x_sc)
    count = 0.0
    mean = 0.0
    m2 = 0.0
    for s0 in range(s_begin, s_end, BLOCK_S):
        s = s0 + offs_s
        smask = s < s_end
        rows = tl.minimum(s_end - s0, BLOCK_S).to(tl.float32)
        for cb in range(0, CG, BLOCK_C):
            cl = cb + offs_c
            mask = smask[:, None] & (cl < CG)[None, :]
            ptrs = X + n * x_sn + s[:, None] * x_ss + (c0 + cl)[None, :] * x_sc
            x = tl.where(mask, tl.load(ptrs, mask=mask, other=0.0).to(tl.float32) - pivot, 0.0)
            tile_count = rows * tl.minimum(CG - cb, BLOCK_C).to(tl.float32)
            tile_mean = tl.sum(x) / tile_count
            d = tl.where(mask, x - tile_mean, 0.0)
            tile_m2 = tl.sum(d * d)
            # Chan et al.: merge (count, mean, m2) with the tile's.
            new_count = count + tile_count
            delta = tile_mean - mean
            mean = mean + delta * (tile_count / new_count)
            m2 = m2 + tile_m2 + delta * delta * (count * (tile_count / new_count))
            count = new_count
    slot = grp * SPLIT + chunk
    tl.store(PART_MEAN + slot, mean)
    tl.store(PART_M2 + slot, m2)


@triton.jit
def merge_partial_stats(
    PART_MEAN, PART_M2, grp, S, CG, CHUNK_S, SPLIT, eps, INT64: tl.constexpr, BLOCK_K: tl.constexpr
):
    """(mean - pivot, rstd) of group ``grp`` from its ``SPLIT`` partials, always summed in the same order.

    The exact parallel form of the variance: M2 = sum_k (M2_k + n_k * (mean_k - mean)^2).
    """
    offs_k = tl.arange(0, BLOCK_K)
    if INT64:
        offs_k = offs_k.to(tl.int64)
    base = grp * SPLIT
    acc_count = tl.zeros([BLOCK_K], tl.float32)
    acc_sum = tl.zeros([BLOCK_K], tl.float32)
    for k0 in range(0, SPLIT, BLOCK_K):
        k = k0 + offs_k
        kmask = k < SPLIT
        begin = k * CHUNK_S
        rows = tl.minimum(begin + CHUNK_S, S) - begin
        cnt = tl.where(kmask, rows.to(tl.float32) * CG, 0.0)
        pm = tl.load(PART_MEAN + base + k, mask=kmask, other=0.0)
        acc_count += cnt
        acc_sum += cnt * pm
    total = tl.sum(acc_count)
    mean = tl.sum(acc_sum) / total
    acc_m2 = tl.zeros([BLOCK_K], tl.float32)
    for k0 in range(0, SPLIT, BLOCK_K):
        k = k0 + offs_k
        kmask = k < SPLIT
        begin = k * CHUNK_S
        rows = tl.minimum(begin + CHUNK_S, S) - begin
        cnt = tl.where(kmask, rows.to(tl.float32) * CG, 0.0)
        pm = tl.load(PART_MEAN + base + k, mask=kmask, other=0.0)
        pm2 = tl.load(PART_M2 + base + k, mask=kmask, other=0.0)
        dev = pm - mean
        acc_m2 += pm2 + cnt * dev * dev
    rstd = tl.rsqrt(tl.sum(acc_m2) / total + eps)
    return mean, rstd


@triton.jit
def fwd_apply_kernel(
    X,
    Y,
    W,
    B,
    SCALE,
    SHIFT,
    RES,
    MEAN,
    RSTD,
    PART_MEAN,
    PART_M2,
    C,
    S,
    G,
    CG,
    CHUNK_S,
    SPLIT,
    eps,
    group_start,
    x_sn,
    x_sc,
    x_ss,
    y_sn,
    y_sc,
    y_ss,
    r_sn,
    r_sc,
    r_ss,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr,
    ACT: tl.constexpr,
    INT64: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Split path, pass 2: merge the group's partials (each program the same way) and apply one chunk."""
    pid = tl.program_id(0)
    grp, n, c0 = _group_of(group_start + pid // SPLIT, G, CG, INT64)
    chunk = pid % SPLIT
    mean, rstd = merge_partial_stats(PART_MEAN, PART_M2, grp, S, CG, CHUNK_S, SPLIT, eps, INT64, BLOCK_K)
    mean = mean + _pivot(X, n, c0, x_sn, x_sc)
    if chunk == 0:
        tl.store(MEAN + grp, mean)
        tl.store(RSTD + grp, rstd)

    s_begin = chunk * CHUNK_S
    s_end = tl.minimum(s_begin + CHUNK_S, S)
    offs_s = tl.arange(0, BLOCK_S)
    if INT64:
        offs_s = offs_s.to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    for cb in range(0, CG, BLOCK_C):
        cl = cb + offs_c
        cmask = cl < CG
        ch = c0 + cl
        _w, gain, offset = channel_coefficients(
            W, B, SCALE, SHIFT, n, ch, cmask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
        )
        for s0 in range(s_begin, s_end, BLOCK_S):
            s = s0 + offs_s
            mask = (s < s_end)[:, None] & cmask[None, :]
            _apply_tile(
                X,
                Y,
                RES,
                n,
                s,
                ch,
                mask,
                mean,
                rstd,
                gain,
                offset,
                x_sn,
                x_sc,
                x_ss,
                y_sn,
                y_sc,
                y_ss,
                r_sn,
                r_sc,
                r_ss,
                HAS_RES,
                ACT,
            )
