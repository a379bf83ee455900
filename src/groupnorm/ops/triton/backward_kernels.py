"""Backward kernels.

With ``pre = x_hat * gain + offset (+ residual)``, ``gain = w (1 + scale)``, ``offset = b (1 + scale) + shift``,
``y = act(pre)`` and ``dp = dy * act'(pre)``, everything follows from two per-(sample, channel) sums over the
spatial positions, ``P = sum_s dp`` and ``Q = sum_s dp * x_hat``:

- ``dshift = P``, ``dscale = w Q + b P``, ``dbias = sum_n (1 + scale) P``, ``dweight = sum_n (1 + scale) Q``;
- per group, ``sum(dx_hat) = sum_c gain P`` and ``sum(dx_hat * x_hat) = sum_c gain Q``, which give
  ``dx = rstd * (gain dp - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))``;
- ``dresidual = dp``.

Programs write P and Q for their chunk into an (N, SPLIT, C) float32 buffer, summed over chunks in a fixed
order into per-(sample, channel) totals (no atomics, bitwise deterministic), kept in chunk 0's slots of the same
buffer (row stride ``TOTAL_ROW`` = SPLIT * C; C on the one-pass and looped paths, whose buffer is (N, 1, C)).
x_hat and pre are recomputed from x, mean, rstd and the epilogue inputs.
Addressing is described in ``tiles``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from groupnorm.ops.triton.epilogue import activate_grad, channel_coefficients, to_dtype
from groupnorm.ops.triton.tiles import (
    chunk_span,
    flat_group,
    index_range,
    load_tile,
    split_unit,
    store_tile,
    unit_channels,
    unit_coords,
    unit_groups,
)


@triton.jit
def _grad_tile(
    X, DY, RES, n, s, smask, mask, g0, ch, G, mean, rstd, gain, offset,
    x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss,
    HAS_RES: tl.constexpr, ACT: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr,
):  # fmt: skip
    """(x_hat, dp) of one tile, zero outside ``mask``; mean/rstd ``[BLOCK_G]``, gain/offset per channel."""
    x = load_tile(X, n, s, smask, mask, g0, ch, G, x_sn, x_sc, x_ss, BLOCK_G, BLOCK_CG, EVEN_CG)
    dy = load_tile(DY, n, s, smask, mask, g0, ch, G, d_sn, d_sc, d_ss, BLOCK_G, BLOCK_CG, EVEN_CG)
    xhat = tl.where(mask, (x - mean[None, :, None]) * rstd[None, :, None], 0.0)
    if ACT != 0:
        pre = xhat * gain[None, :, :] + offset[None, :, :]
        if HAS_RES:
            pre += load_tile(RES, n, s, smask, mask, g0, ch, G, r_sn, r_sc, r_ss, BLOCK_G, BLOCK_CG, EVEN_CG)
        dp = tl.where(mask, dy * activate_grad(pre, ACT), 0.0)
    else:
        dp = dy
    return xhat, dp


@triton.jit
def _store_dx_tile(
    DX, DRES, n, s, smask, mask, g0, ch, G, xhat, dp, rstd, gain, mean_dxhat, mean_dxhat_xhat,
    x_sn, x_sc, x_ss, r_sn, r_sc, r_ss,
    WANT_DX: tl.constexpr, WANT_DRES: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr,
):  # fmt: skip
    if WANT_DRES:
        dres = to_dtype(dp, DRES.dtype.element_ty)
        store_tile(DRES, dres, n, s, smask, mask, g0, ch, G, r_sn, r_sc, r_ss, BLOCK_G, BLOCK_CG, EVEN_CG)
    if WANT_DX:
        dx = rstd[None, :, None] * (
            dp * gain[None, :, :] - mean_dxhat[None, :, None] - xhat * mean_dxhat_xhat[None, :, None]
        )
        dx = to_dtype(dx, DX.dtype.element_ty)
        store_tile(DX, dx, n, s, smask, mask, g0, ch, G, x_sn, x_sc, x_ss, BLOCK_G, BLOCK_CG, EVEN_CG)


@triton.jit
def _load_stats(MEAN, RSTD, grp, gmask):
    mean = tl.load(MEAN + grp, mask=gmask, other=0.0).to(tl.float32)
    rstd = tl.load(RSTD + grp, mask=gmask, other=0.0).to(tl.float32)
    return mean, rstd


@triton.jit
def bwd_onepass_kernel(
    DY, X, W, B, SCALE, SHIFT, RES, MEAN, RSTD, DX, DRES, PART_P, PART_Q,
    C, S, G, CG, GROUP_BLOCKS, count, unit_start,
    x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr,
    WANT_DX: tl.constexpr, WANT_DRES: tl.constexpr, WANT_PQ: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr,
):  # fmt: skip
    """One program per unit, its groups whole in one tile: x and dy are read once. PART_* is (N, 1, C)."""
    n, g0 = unit_coords(unit_start + tl.program_id(0), GROUP_BLOCKS, BLOCK_G, INT64)
    g, gmask = unit_groups(g0, G, BLOCK_G)
    mean, rstd = _load_stats(MEAN, RSTD, n * G + g, gmask)
    ch, cmask = unit_channels(g0, 0, G, CG, BLOCK_G, BLOCK_CG, EVEN_CG)
    s = index_range(BLOCK_S, INT64)
    smask = s < S
    mask = smask[:, None, None] & cmask[None, :, :]
    _w, gain, offset = channel_coefficients(
        W, B, SCALE, SHIFT, n, ch, cmask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
    )
    xhat, dp = _grad_tile(
        X, DY, RES, n, s, smask, mask, g0, ch, G, mean, rstd, gain, offset,
        x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss, HAS_RES, ACT, BLOCK_G, BLOCK_CG, EVEN_CG,
    )  # fmt: skip
    p = tl.sum(dp, axis=0)
    q = tl.sum(dp * xhat, axis=0)
    if WANT_PQ:
        tl.store(PART_P + n * C + ch, p, mask=cmask)
        tl.store(PART_Q + n * C + ch, q, mask=cmask)
    mean_dxhat = tl.sum(gain * p, axis=1) / count
    mean_dxhat_xhat = tl.sum(gain * q, axis=1) / count
    _store_dx_tile(
        DX, DRES, n, s, smask, mask, g0, ch, G, xhat, dp, rstd, gain, mean_dxhat, mean_dxhat_xhat,
        x_sn, x_sc, x_ss, r_sn, r_sc, r_ss, WANT_DX, WANT_DRES, BLOCK_G, BLOCK_CG, EVEN_CG,
    )  # fmt: skip


@triton.jit
def _segment_add(f1, p1, q1, f2, p2, q2):
    """Combine of a segmented inclusive sum of (P, Q): a flag marks where a segment (a channel's run) starts."""
    return f1 | f2, tl.where(f2 != 0, p2, p1 + p2), tl.where(f2 != 0, q2, q1 + q2)


@triton.jit
def _flat_offsets(n, g, e, S, CG, GROUP_LEN, r_sn, r_sc, r_ss, RES_FLAT: tl.constexpr):
    """Positions ``e`` of group ``g``'s run: (mask, channel, offset in the run's sample, residual offset).

    Only indices go in: torch.compile's analysis of which arguments a kernel writes counts every pointer passed
    to the helper that computed a store's address, so the addresses must not come from a helper handed x or dy.
    """
    emask = e < GROUP_LEN
    ch = g * CG + e // S
    run = g * GROUP_LEN + e
    if RES_FLAT:
        res_at = n * r_sn + run
    else:
        res_at = n * r_sn + ch * r_sc + (e % S) * r_ss
    return emask, ch, run, res_at


@triton.jit
def _flat_chunk(
    DY, X, W, B, SCALE, SHIFT, RES, n, emask, ch, run, res_at, mean, rstd, C, x_sn, d_sn,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr, ACT: tl.constexpr,
):  # fmt: skip
    """(gain, x_hat, dp) at the positions :func:`_flat_offsets` gave, zero outside ``emask``."""
    _w, gain, offset = channel_coefficients(
        W, B, SCALE, SHIFT, n, ch, emask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
    )
    x = tl.load(X + n * x_sn + run, mask=emask, other=0.0).to(tl.float32)
    dy = tl.load(DY + n * d_sn + run, mask=emask, other=0.0).to(tl.float32)
    xhat = tl.where(emask, (x - mean) * rstd, 0.0)
    if ACT != 0:
        pre = xhat * gain + offset
        if HAS_RES:
            pre += tl.load(RES + res_at, mask=emask, other=0.0).to(tl.float32)
        dp = tl.where(emask, dy * activate_grad(pre, ACT), 0.0)
    else:
        dp = dy
    return gain, xhat, dp


@triton.jit
def _store_channel_sums(
    PART_P, PART_Q, n, C, S, e, e0, emask, ch, xhat, dp, carry_p, carry_q, BLOCK_E: tl.constexpr
):
    """P and Q of the channels whose runs end in this chunk (a segmented scan, read at each run's last position),
    starting from the sums ``carry_*`` of the run open at the chunk's start; returns the sums of the run left
    open at its end (0 when none is)."""
    first = (e % S == 0).to(tl.int32)
    head = e == e0
    _f, p, q = tl.associative_scan(
        (first, tl.where(head, dp + carry_p, dp), tl.where(head, dp * xhat + carry_q, dp * xhat)),
        0,
        _segment_add,
    )
    last = emask & (e % S == S - 1)
    tl.store(PART_P + n * C + ch, p, mask=last)
    tl.store(PART_Q + n * C + ch, q, mask=last)
    open_end = (e == e0 + BLOCK_E - 1) & (e % S != S - 1)
    return tl.sum(tl.where(open_end, p, 0.0), axis=0), tl.sum(tl.where(open_end, q, 0.0), axis=0)


@triton.jit
def _store_flat_dx(
    DX, DRES, n, x_sn, run, res_at, emask, gdp, xhat, dp, rstd, mean_dxhat, mean_dxhat_xhat,
    WANT_DX: tl.constexpr, WANT_DRES: tl.constexpr,
):  # fmt: skip
    """dresidual = dp and dx = rstd (gain dp - mean(dx_hat) - x_hat mean(dx_hat x_hat)) at a chunk's positions."""
    if WANT_DRES:
        tl.store(DRES + res_at, to_dtype(dp, DRES.dtype.element_ty), mask=emask)
    if WANT_DX:
        dx = rstd * (gdp - mean_dxhat - xhat * mean_dxhat_xhat)
        tl.store(DX + n * x_sn + run, to_dtype(dx, DX.dtype.element_ty), mask=emask)


@triton.jit
def bwd_onepass_flat_kernel(
    DY, X, W, B, SCALE, SHIFT, RES, MEAN, RSTD, DX, DRES, PART_P, PART_Q,
    C, S, G, CG, GROUP_LEN, count,
    x_sn, d_sn, r_sn, r_sc, r_ss,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr, RES_FLAT: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr,
    WANT_DX: tl.constexpr, WANT_DRES: tl.constexpr, WANT_PQ: tl.constexpr,
    BLOCK_E: tl.constexpr, ONE_CHUNK: tl.constexpr,
):  # fmt: skip
    """:func:`bwd_onepass_kernel` for a group whose ``GROUP_LEN = CG * S`` elements are one contiguous run in x,
    dy and dx (NCHW): one program per group walks the run as flat ``[BLOCK_E]`` chunks, so loads and stores
    vectorize whatever S is. The group's two sums are flat sums (``sum_c gain P = sum gain dp``); P and Q per
    channel, for the parameter gradients, come from a segmented scan over the run.

    ``ONE_CHUNK`` (``GROUP_LEN <= BLOCK_E``): x and dy are read once and dx written from registers. Otherwise a
    first loop sums, a second recomputes x_hat and dp from x and dy (read again, from cache: the group was just
    read) and writes dx; chunks keep registers below the spill point where a whole group would not.
    ``RES_FLAT``: the residual has the same run layout (else it is addressed by its strides)."""
    pid, n, g = flat_group(G, INT64)
    mean = tl.load(MEAN + pid).to(tl.float32)
    rstd = tl.load(RSTD + pid).to(tl.float32)
    offs = index_range(BLOCK_E, INT64)
    if ONE_CHUNK:
        emask, ch, run, res_at = _flat_offsets(n, g, offs, S, CG, GROUP_LEN, r_sn, r_sc, r_ss, RES_FLAT)
        gain, xhat, dp = _flat_chunk(
            DY, X, W, B, SCALE, SHIFT, RES, n, emask, ch, run, res_at, mean, rstd, C, x_sn, d_sn,
            HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT, HAS_RES, ACT,
        )  # fmt: skip
        if WANT_PQ:
            _store_channel_sums(PART_P, PART_Q, n, C, S, offs, 0, emask, ch, xhat, dp, 0.0, 0.0, BLOCK_E)
        gdp = gain * dp
        mean_dxhat = tl.sum(gdp, axis=0) / count
        mean_dxhat_xhat = tl.sum(gdp * xhat, axis=0) / count
        _store_flat_dx(
            DX, DRES, n, x_sn, run, res_at, emask, gdp, xhat, dp, rstd, mean_dxhat, mean_dxhat_xhat,
            WANT_DX, WANT_DRES,
        )  # fmt: skip
    else:
        sum_dxhat = 0.0
        sum_dxhat_xhat = 0.0
        carry_p = 0.0
        carry_q = 0.0
        for e0 in range(0, GROUP_LEN, BLOCK_E):
            e = e0 + offs
            emask, ch, run, res_at = _flat_offsets(n, g, e, S, CG, GROUP_LEN, r_sn, r_sc, r_ss, RES_FLAT)
            gain, xhat, dp = _flat_chunk(
                DY, X, W, B, SCALE, SHIFT, RES, n, emask, ch, run, res_at, mean, rstd, C, x_sn, d_sn,
                HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT, HAS_RES, ACT,
            )  # fmt: skip
            if WANT_PQ:
                carry_p, carry_q = _store_channel_sums(
                    PART_P, PART_Q, n, C, S, e, e0, emask, ch, xhat, dp, carry_p, carry_q, BLOCK_E
                )
            gdp = gain * dp
            sum_dxhat += tl.sum(gdp, axis=0)
            sum_dxhat_xhat += tl.sum(gdp * xhat, axis=0)
        mean_dxhat = sum_dxhat / count
        mean_dxhat_xhat = sum_dxhat_xhat / count
        if WANT_DX or WANT_DRES:
            for e0 in range(0, GROUP_LEN, BLOCK_E):
                e = e0 + offs
                emask, ch, run, res_at = _flat_offsets(n, g, e, S, CG, GROUP_LEN, r_sn, r_sc, r_ss, RES_FLAT)
                gain, xhat, dp = _flat_chunk(
                    DY, X, W, B, SCALE, SHIFT, RES, n, emask, ch, run, res_at, mean, rstd, C, x_sn, d_sn,
                    HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT, HAS_RES, ACT,
                )  # fmt: skip
                _store_flat_dx(
                    DX, DRES, n, x_sn, run, res_at, emask, gain * dp, xhat, dp, rstd, mean_dxhat,
                    mean_dxhat_xhat, WANT_DX, WANT_DRES,
                )  # fmt: skip


@triton.jit
def _chunk_pq(
    X, DY, RES, n, g0, ch, cmask, G, s_begin, s_end, mean, rstd, gain, offset,
    x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss,
    HAS_RES: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr,
):  # fmt: skip
    """(P, Q) ``[BLOCK_G, BLOCK_CG]`` of channels ``ch`` over positions ``[s_begin, s_end)``."""
    offs_s = index_range(BLOCK_S, INT64)
    acc_p = tl.zeros([BLOCK_G, BLOCK_CG], tl.float32)
    acc_q = tl.zeros([BLOCK_G, BLOCK_CG], tl.float32)
    for s0 in range(s_begin, s_end, BLOCK_S):
        s = s0 + offs_s
        smask = s < s_end
        mask = smask[:, None, None] & cmask[None, :, :]
        xhat, dp = _grad_tile(
            X, DY, RES, n, s, smask, mask, g0, ch, G, mean, rstd, gain, offset,
            x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss, HAS_RES, ACT, BLOCK_G, BLOCK_CG, EVEN_CG,
        )  # fmt: skip
        acc_p += tl.sum(dp, axis=0)
        acc_q += tl.sum(dp * xhat, axis=0)
    return acc_p, acc_q


@triton.jit
def bwd_partial_kernel(
    DY, X, W, B, SCALE, SHIFT, RES, MEAN, RSTD, PART_P, PART_Q,
    C, S, G, CG, GROUP_BLOCKS, CHUNK_S, SPLIT, unit_start,
    x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr,
):  # fmt: skip
    """Split path, pass 1: P and Q of one chunk of a unit's groups, into PART_* (N, SPLIT, C)."""
    n, g0, chunk = split_unit(unit_start, SPLIT, GROUP_BLOCKS, BLOCK_G, INT64)
    g, gmask = unit_groups(g0, G, BLOCK_G)
    mean, rstd = _load_stats(MEAN, RSTD, n * G + g, gmask)
    s_begin, s_end = chunk_span(chunk, CHUNK_S, S)
    row = (n * SPLIT + chunk) * C
    for cb in range(0, CG, BLOCK_CG):
        ch, cmask = unit_channels(g0, cb, G, CG, BLOCK_G, BLOCK_CG, EVEN_CG)
        _w, gain, offset = channel_coefficients(
            W, B, SCALE, SHIFT, n, ch, cmask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
        )
        acc_p, acc_q = _chunk_pq(
            X, DY, RES, n, g0, ch, cmask, G, s_begin, s_end, mean, rstd, gain, offset,
            x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss, HAS_RES, ACT, INT64,
            BLOCK_S, BLOCK_G, BLOCK_CG, EVEN_CG,
        )  # fmt: skip
        tl.store(PART_P + row + ch, acc_p, mask=cmask)
        tl.store(PART_Q + row + ch, acc_q, mask=cmask)


@triton.jit
def _sum_partials(PART, n, ch, cmask, C, SPLIT, INT64: tl.constexpr, BLOCK_K: tl.constexpr):
    """sum over k of PART[n, k, ch] in a fixed order, shaped like ``ch`` (2-D)."""
    offs_k = index_range(BLOCK_K, INT64)
    acc = tl.zeros([BLOCK_K, ch.shape[0], ch.shape[1]], tl.float32)
    for k0 in range(0, SPLIT, BLOCK_K):
        k = k0 + offs_k
        mask = (k < SPLIT)[:, None, None] & cmask[None, :, :]
        acc += tl.load(PART + (n * SPLIT + k)[:, None, None] * C + ch[None, :, :], mask=mask, other=0.0)
    return tl.sum(acc, axis=0)


@triton.jit
def bwd_total_kernel(
    PART_P, PART_Q,
    C, G, CG, GROUP_BLOCKS, SPLIT, unit_start,
    INT64: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Split path, pass 2: per-channel totals of a unit's partials, summed over chunks in a fixed order once (so
    that the many dx programs of the unit each read C/G values instead of SPLIT times as many), written over the
    chunk-0 partials of the same channels (this program read them all first; no other program reads them)."""
    n, g0 = unit_coords(unit_start + tl.program_id(0), GROUP_BLOCKS, BLOCK_G, INT64)
    for cb in range(0, CG, BLOCK_CG):
        ch, cmask = unit_channels(g0, cb, G, CG, BLOCK_G, BLOCK_CG, EVEN_CG)
        tl.store(
            PART_P + n * SPLIT * C + ch,
            _sum_partials(PART_P, n, ch, cmask, C, SPLIT, INT64, BLOCK_K),
            mask=cmask,
        )
        tl.store(
            PART_Q + n * SPLIT * C + ch,
            _sum_partials(PART_Q, n, ch, cmask, C, SPLIT, INT64, BLOCK_K),
            mask=cmask,
        )


@triton.jit
def bwd_dx_kernel(
    DY, X, W, B, SCALE, SHIFT, RES, MEAN, RSTD, DX, DRES, TOTAL_P, TOTAL_Q,
    C, S, G, CG, GROUP_BLOCKS, CHUNK_S, SPLIT, count, unit_start, TOTAL_ROW,
    x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    HAS_RES: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr,
    WANT_DX: tl.constexpr, WANT_DRES: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr, FUSED_PQ: tl.constexpr,
):  # fmt: skip
    """Split path, pass 3: the groups' two sums from the per-channel totals (row stride ``TOTAL_ROW``), then dx
    of one chunk.

    ``FUSED_PQ`` (``SPLIT == 1``, the looped path): the one program of a unit computes P and Q over the whole
    unit itself first and writes them to TOTAL_* (N, 1, C) for the parameter gradients: one launch, not three.
    """
    n, g0, chunk = split_unit(unit_start, SPLIT, GROUP_BLOCKS, BLOCK_G, INT64)
    g, gmask = unit_groups(g0, G, BLOCK_G)
    mean, rstd = _load_stats(MEAN, RSTD, n * G + g, gmask)

    sum_dxhat = tl.zeros([BLOCK_G], tl.float32)
    sum_dxhat_xhat = tl.zeros([BLOCK_G], tl.float32)
    if FUSED_PQ:
        for cb in range(0, CG, BLOCK_CG):
            ch, cmask = unit_channels(g0, cb, G, CG, BLOCK_G, BLOCK_CG, EVEN_CG)
            _w, gain, offset = channel_coefficients(
                W, B, SCALE, SHIFT, n, ch, cmask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
            )
            p, q = _chunk_pq(
                X, DY, RES, n, g0, ch, cmask, G, 0, S, mean, rstd, gain, offset,
                x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss, HAS_RES, ACT, INT64,
                BLOCK_S, BLOCK_G, BLOCK_CG, EVEN_CG,
            )  # fmt: skip
            tl.store(TOTAL_P + n * TOTAL_ROW + ch, p, mask=cmask)
            tl.store(TOTAL_Q + n * TOTAL_ROW + ch, q, mask=cmask)
            sum_dxhat += tl.sum(gain * p, axis=1)
            sum_dxhat_xhat += tl.sum(gain * q, axis=1)
    elif WANT_DX:
        for cb in range(0, CG, BLOCK_CG):
            ch, cmask = unit_channels(g0, cb, G, CG, BLOCK_G, BLOCK_CG, EVEN_CG)
            _w, gain, _offset = channel_coefficients(
                W, B, SCALE, SHIFT, n, ch, cmask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
            )
            p = tl.load(TOTAL_P + n * TOTAL_ROW + ch, mask=cmask, other=0.0)
            q = tl.load(TOTAL_Q + n * TOTAL_ROW + ch, mask=cmask, other=0.0)
            sum_dxhat += tl.sum(gain * p, axis=1)
            sum_dxhat_xhat += tl.sum(gain * q, axis=1)
    mean_dxhat = sum_dxhat / count
    mean_dxhat_xhat = sum_dxhat_xhat / count

    s_begin, s_end = chunk_span(chunk, CHUNK_S, S)
    offs_s = index_range(BLOCK_S, INT64)
    for cb in range(0, CG, BLOCK_CG):
        ch, cmask = unit_channels(g0, cb, G, CG, BLOCK_G, BLOCK_CG, EVEN_CG)
        _w, gain, offset = channel_coefficients(
            W, B, SCALE, SHIFT, n, ch, cmask, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
        )
        for s0 in range(s_begin, s_end, BLOCK_S):
            s = s0 + offs_s
            smask = s < s_end
            mask = smask[:, None, None] & cmask[None, :, :]
            xhat, dp = _grad_tile(
                X, DY, RES, n, s, smask, mask, g0, ch, G, mean, rstd, gain, offset,
                x_sn, x_sc, x_ss, d_sn, d_sc, d_ss, r_sn, r_sc, r_ss, HAS_RES, ACT, BLOCK_G, BLOCK_CG, EVEN_CG,
            )  # fmt: skip
            _store_dx_tile(
                DX, DRES, n, s, smask, mask, g0, ch, G, xhat, dp, rstd, gain, mean_dxhat, mean_dxhat_xhat,
                x_sn, x_sc, x_ss, r_sn, r_sc, r_ss, WANT_DX, WANT_DRES, BLOCK_G, BLOCK_CG, EVEN_CG,
            )  # fmt: skip


@triton.jit
def bwd_param_kernel(
    W, B, SCALE, PART_P, PART_Q, DW, DB, DSCALE, DSHIFT,
    N, C, ROW,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, INT64: tl.constexpr,
    WANT_DW: tl.constexpr, WANT_DB: tl.constexpr, WANT_DSCALE: tl.constexpr, WANT_DSHIFT: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """Per-channel gradients from the per-sample sums P and Q (sample n's at ``n * ROW``): ``BLOCK_N`` samples at
    a time in ``[BLOCK_N, BLOCK_C]`` tiles, summed over samples in a fixed order (deterministic, no atomics)."""
    ch = (tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C))[None, :]
    cmask = ch < C
    w = tl.full([1, BLOCK_C], 1.0, tl.float32)
    b = tl.zeros([1, BLOCK_C], tl.float32)
    if HAS_W:
        w = tl.load(W + ch, mask=cmask, other=1.0).to(tl.float32)
    if HAS_B:
        b = tl.load(B + ch, mask=cmask, other=0.0).to(tl.float32)
    offs_n = index_range(BLOCK_N, INT64)[:, None]
    acc_w = tl.zeros([BLOCK_N, BLOCK_C], tl.float32)
    acc_b = tl.zeros([BLOCK_N, BLOCK_C], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rows = n0 + offs_n
        mask = (rows < N) & cmask
        at = rows * C + ch
        p = tl.load(PART_P + rows * ROW + ch, mask=mask, other=0.0)
        q = tl.load(PART_Q + rows * ROW + ch, mask=mask, other=0.0)
        if WANT_DSCALE:
            tl.store(DSCALE + at, to_dtype(w * q + b * p, DSCALE.dtype.element_ty), mask=mask)
        if WANT_DSHIFT:
            tl.store(DSHIFT + at, to_dtype(p, DSHIFT.dtype.element_ty), mask=mask)
        if HAS_SCALE:
            factor = 1.0 + tl.load(SCALE + at, mask=mask, other=0.0).to(tl.float32)
            p = p * factor
            q = q * factor
        acc_w += q
        acc_b += p
    if WANT_DW:
        tl.store(DW + ch, to_dtype(tl.sum(acc_w, axis=0)[None, :], DW.dtype.element_ty), mask=cmask)
    if WANT_DB:
        tl.store(DB + ch, to_dtype(tl.sum(acc_b, axis=0)[None, :], DB.dtype.element_ty), mask=cmask)
