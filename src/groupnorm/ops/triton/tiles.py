"""How the kernels address their data: group tiles of (N, C, S) tensors.

Every tensor is seen as (N, C, S) with its own strides (sample, channel, spatial), which covers contiguous,
channels_last and channels_last_3d in place: Triton specializes the stride that is 1, so loads are coalesced
along whichever axis is contiguous.

A program owns a *unit*: ``BLOCK_G`` consecutive groups of one sample (``BLOCK_G`` > 1 when channels are
innermost, so that a tile row spans enough contiguous channels to use whole memory sectors). It walks the unit
in 3-D tiles ``[BLOCK_S, BLOCK_G, BLOCK_CG]``: spatial positions x groups x channels within a group. When a block
covers each group exactly (``EVEN_CG``) the unit's channels are one run, and :func:`load_tile` / :func:`store_tile`
move the tile as rows of that run, so that channels_last loads and stores are as wide as the run, not as a group.
Groups that are one contiguous run in memory (NCHW, one pass) are walked flat by their own kernels instead.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def unit_coords(unit, GROUP_BLOCKS, BLOCK_G: tl.constexpr, INT64: tl.constexpr):
    """(sample, first group) of a unit; ``GROUP_BLOCKS`` = units per sample."""
    if INT64:
        unit = unit.to(tl.int64)
    return unit // GROUP_BLOCKS, (unit % GROUP_BLOCKS) * BLOCK_G


@triton.jit
def split_unit(unit_start, SPLIT, GROUP_BLOCKS, BLOCK_G: tl.constexpr, INT64: tl.constexpr):
    """(sample, first group, chunk) of this program on the split path: ``SPLIT`` programs per unit, one per chunk
    of positions, for the units from ``unit_start`` on. Indices only (see :func:`flat_group`)."""
    pid = tl.program_id(0)
    n, g0 = unit_coords(unit_start + pid // SPLIT, GROUP_BLOCKS, BLOCK_G, INT64)
    return n, g0, pid % SPLIT


@triton.jit
def chunk_span(chunk, CHUNK_S, S):
    """Positions ``[begin, end)`` of chunk ``chunk`` of ``CHUNK_S`` positions (the last one may be shorter)."""
    s_begin = chunk * CHUNK_S
    return s_begin, tl.minimum(s_begin + CHUNK_S, S)


@triton.jit
def flat_group(G, INT64: tl.constexpr):
    """(program, sample, group) of a flat kernel's program, one per (sample, group); the program id is also the
    group's slot in the (N, G) statistics.

    Indices only, as every helper here that a store's address comes from: torch.compile's analysis of which
    arguments a kernel writes counts every pointer passed to that helper.
    """
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    return pid, pid // G, pid % G


@triton.jit
def unit_groups(g0, G, BLOCK_G: tl.constexpr):
    """Group indices ``[BLOCK_G]`` of the unit starting at ``g0``, and which of them exist."""
    g = g0 + tl.arange(0, BLOCK_G)
    return g, g < G


@triton.jit
def unit_channels(g0, cb, G, CG, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr):
    """Channel indices ``[BLOCK_G, BLOCK_CG]`` of channel block ``cb`` of each group of the unit, and their mask.

    ``EVEN_CG`` (``CG == BLOCK_CG``: one block covers a group exactly, ``cb`` is 0): the indices are built from
    compile-time constants only, so the compiler sees runs of ``BLOCK_CG`` consecutive valid channels and, where
    channels are innermost, vectorizes the loads and stores (a run-time ``cl < CG`` mask makes them scalar).
    """
    g = g0 + tl.arange(0, BLOCK_G)
    if EVEN_CG:
        ch = g[:, None] * BLOCK_CG + tl.arange(0, BLOCK_CG)[None, :]
        mask = tl.broadcast_to((g < G)[:, None], (BLOCK_G, BLOCK_CG))
    else:
        cl = cb + tl.arange(0, BLOCK_CG)
        ch = g[:, None] * CG + cl[None, :]
        mask = (g < G)[:, None] & (cl < CG)[None, :]
    return ch, mask


@triton.jit
def index_range(BLOCK: tl.constexpr, INT64: tl.constexpr):
    """``arange(BLOCK)``, 64-bit when ``INT64`` so that products with strides cannot overflow."""
    s = tl.arange(0, BLOCK)
    if INT64:
        s = s.to(tl.int64)
    return s


@triton.jit
def tile_ptrs(T, n, s, ch, t_sn, t_sc, t_ss):
    """Pointers ``[BLOCK_S, BLOCK_G, BLOCK_CG]`` of tensor ``T`` at sample ``n``, positions ``s``, channels ``ch``."""
    return T + n * t_sn + s[:, None, None] * t_ss + ch[None, :, :] * t_sc


@triton.jit
def _row_ptrs(T, n, s, smask, g0, G, t_sn, t_sc, t_ss, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr):
    """Pointers and mask ``[BLOCK_S, BLOCK_G * BLOCK_CG]`` of a unit whose channels are one run (``EVEN_CG``)."""
    c = g0 * BLOCK_CG + tl.arange(0, BLOCK_G * BLOCK_CG)
    ptrs = T + n * t_sn + s[:, None] * t_ss + c[None, :] * t_sc
    return ptrs, smask[:, None] & (c < G * BLOCK_CG)[None, :]


@triton.jit
def load_tile(
    T, n, s, smask, mask, g0, ch, G, t_sn, t_sc, t_ss,
    BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr,
):  # fmt: skip
    """Tile ``[BLOCK_S, BLOCK_G, BLOCK_CG]`` of ``T`` as float32, 0 outside ``mask`` (positions ``s`` valid where
    ``smask``, channels ``ch``).

    ``EVEN_CG``: the unit's channels are one run, so the tile is loaded as rows of ``BLOCK_G * BLOCK_CG``
    consecutive channels and reshaped: where channels are innermost the compiler then sees runs longer than one
    group's and vectorizes across groups (4 channels per group of bf16 would otherwise give 8-byte accesses).
    """
    if EVEN_CG:
        ptrs, rmask = _row_ptrs(T, n, s, smask, g0, G, t_sn, t_sc, t_ss, BLOCK_G, BLOCK_CG)
        t = tl.reshape(tl.load(ptrs, mask=rmask, other=0.0), (s.shape[0], BLOCK_G, BLOCK_CG))
    else:
        t = tl.load(tile_ptrs(T, n, s, ch, t_sn, t_sc, t_ss), mask=mask, other=0.0)
    return t.to(tl.float32)


@triton.jit
def store_tile(
    T, value, n, s, smask, mask, g0, ch, G, t_sn, t_sc, t_ss,
    BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN_CG: tl.constexpr,
):  # fmt: skip
    """Store ``value`` ``[BLOCK_S, BLOCK_G, BLOCK_CG]`` (already in ``T``'s dtype) where ``mask``, addressed as
    :func:`load_tile` addresses it."""
    if EVEN_CG:
        ptrs, rmask = _row_ptrs(T, n, s, smask, g0, G, t_sn, t_sc, t_ss, BLOCK_G, BLOCK_CG)
        tl.store(ptrs, tl.reshape(value, (s.shape[0], BLOCK_G * BLOCK_CG)), mask=rmask)
    else:
        tl.store(tile_ptrs(T, n, s, ch, t_sn, t_sc, t_ss), value, mask=mask)


@triton.jit
def group_sum(t):
    """``[BLOCK_S, BLOCK_G, BLOCK_CG]`` -> ``[BLOCK_G]``."""
    return tl.sum(tl.sum(t, axis=2), axis=0)
