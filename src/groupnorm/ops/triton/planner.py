"""How the Triton kernels split the work: block shapes, programs per group, and L2 waves.

Pure Python (no Triton, no GPU), so the rule is testable anywhere and the tests can force every path by passing
a small :class:`DeviceSpec` / :class:`Tuning`.

The rule, for ``NG = N * G`` groups of ``E = (C / G) * S`` elements (S = product of the spatial sizes):

1. Tile. A program walks its share of a group in ``[block_s, block_c]`` tiles: ``block_c`` covers the group's
   channels (up to ``max_block_c``), ``block_s`` the spatial positions, ``block_s * block_c ~= tile_elems``.
2. One pass. If a whole group fits in one program's registers (``E <= max_onepass_elems``) and there are enough
   groups to occupy the GPU (``NG >= sm_count``) -- or the group is so small (one tile) that splitting it gains
   nothing -- one program per group computes the statistics and applies the epilogue from the same registers:
   x is read once.
3. Split. Otherwise each group's spatial extent is cut into ``split`` chunks of ``chunk_s`` positions (a multiple
   of ``block_s``), one program each, so that ``groups * split ~= programs_per_sm * sm_count``. Pass 1 writes
   per-chunk partial statistics, pass 2 merges them in a fixed order (deterministic, no atomics) and applies.
4. L2 waves. Pass 2 reads x again. When all groups together fit in ``l2_fraction`` of the L2 cache, or a single
   group does not, one wave covers everything (in the second case the re-read comes from HBM: the "read-twice"
   roofline). Otherwise groups are processed in waves of ``groups_per_wave`` groups whose bytes fit in that
   share of L2, pass 1 then pass 2 per wave, so pass 2 finds x in L2. The split is then sized for one wave.

Example::

    >>> p = plan(num_groups_total=32, channels_per_group=16, spatial=65536, reread_bytes_per_elem=2,
    ...          device=DeviceSpec(sm_count=132, l2_bytes=50 * 2**20))
    >>> p.one_pass, p.waves > 1
    (False, True)
"""

from __future__ import annotations

from dataclasses import dataclass


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


@dataclass(frozen=True)
class DeviceSpec:
    """What the planner needs to know about the GPU."""

    sm_count: int
    l2_bytes: int


@dataclass(frozen=True)
class Tuning:
    """Knobs of the rule; the defaults are for current NVIDIA data-center GPUs."""

    max_onepass_elems: int = 16384  # largest group one program holds in registers (forward)
    tile_elems: int = 4096  # elements per loop step of a split-path program
    max_block_c: int = 256  # widest channel extent of a tile; wider groups loop over channel blocks
    programs_per_sm: int = 4  # split-path occupancy target
    max_split: int = 1024  # most programs per group
    l2_fraction: float = 0.5  # share of L2 a wave may fill (the rest absorbs y's writes and other traffic)
    force_int64: bool = False  # 64-bit offsets even for small tensors (tests exercise that path this way)

    def __post_init__(self) -> None:
        for name in ("max_onepass_elems", "tile_elems", "max_block_c", "programs_per_sm", "max_split"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"Tuning.{name} must be >= 1, got {name}={value}")
        if not 0.0 < self.l2_fraction <= 1.0:
            raise ValueError(f"Tuning.l2_fraction must be in (0, 1], got l2_fraction={self.l2_fraction}")


@dataclass(frozen=True)
class Plan:
    """The launch configuration for one call."""

    one_pass: bool
    block_c: int  # tile extent along channels (power of two)
    block_s: int  # tile extent along spatial positions (power of two)
    split: int  # programs per group (1 on the one-pass path)
    chunk_s: int  # spatial positions per program
    groups_per_wave: int
    waves: int
    num_warps: int
    roofline: str  # "read-once", "l2-wave" or "read-twice": the bandwidth bound this plan can reach

    def describe(self) -> str:
        path = "one-pass" if self.one_pass else f"split={self.split}x{self.chunk_s}"
        return (
            f"{path} tile={self.block_s}x{self.block_c} waves={self.waves}x{self.groups_per_wave} "
            f"warps={self.num_warps} roofline={self.roofline}"
        )


def _num_warps(tile: int) -> int:
    if tile <= 1024:
        return 4
    if tile <= 8192:
        return 8
    return 16


def plan(
    num_groups_total: int,
    channels_per_group: int,
    spatial: int,
    reread_bytes_per_elem: int,
    device: DeviceSpec,
    tuning: Tuning | None = None,
) -> Plan:
    """The launch plan for ``num_groups_total`` (= N * G) groups of ``channels_per_group * spatial`` elements.

    ``reread_bytes_per_elem`` is what the second pass reads again per element (x's size in the forward, x's plus
    grad_y's in the backward); it decides the L2 waves.
    """
    tuning = tuning or Tuning()
    for name, value in (
        ("num_groups_total", num_groups_total),
        ("channels_per_group", channels_per_group),
        ("spatial", spatial),
        ("sm_count", device.sm_count),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {name}={value}")
    group_elems = channels_per_group * spatial
    block_c = min(next_power_of_2(channels_per_group), next_power_of_2(tuning.max_block_c))

    onepass_block_s = next_power_of_2(spatial)
    fits = block_c >= channels_per_group and onepass_block_s * block_c <= max(tuning.max_onepass_elems, 1)
    split_block_s = max(1, min(next_power_of_2(spatial), next_power_of_2(tuning.tile_elems) // block_c))
    tiny = spatial <= split_block_s and channels_per_group <= block_c  # the whole group is one tile anyway
    if fits and (num_groups_total >= device.sm_count or tiny):
        return Plan(
            one_pass=True,
            block_c=block_c,
            block_s=onepass_block_s,
            split=1,
            chunk_s=spatial,
            groups_per_wave=num_groups_total,
            waves=1,
            num_warps=_num_warps(onepass_block_s * block_c),
            roofline="read-once",
        )

    group_bytes = group_elems * reread_bytes_per_elem
    budget = int(device.l2_bytes * tuning.l2_fraction)
    if num_groups_total * group_bytes <= budget:
        groups_per_wave, roofline = num_groups_total, "l2-wave"
    elif group_bytes > budget:
        groups_per_wave, roofline = num_groups_total, "read-twice"
    else:
        groups_per_wave, roofline = budget // group_bytes, "l2-wave"
    waves = cdiv(num_groups_total, groups_per_wave)

    target_programs = tuning.programs_per_sm * device.sm_count
    max_chunks = cdiv(spatial, split_block_s)
    split = min(max(1, cdiv(target_programs, groups_per_wave)), max_chunks, tuning.max_split)
    chunk_s = cdiv(cdiv(spatial, split), split_block_s) * split_block_s
    split = cdiv(spatial, chunk_s)  # no empty chunks
    return Plan(
        one_pass=False,
        block_c=block_c,
        block_s=split_block_s,
        split=split,
        chunk_s=chunk_s,
        groups_per_wave=groups_per_wave,
        waves=waves,
        num_warps=_num_warps(split_block_s * block_c),
        roofline=roofline,
    )
