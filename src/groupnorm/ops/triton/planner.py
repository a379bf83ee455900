"""How the Triton kernels split the work: block shapes, programs per group, and L2 waves.

Pure Python (no Triton, no GPU), so the rule is testable anywhere and the tests can force every path by passing
a small :class:`DeviceSpec` / :class:`Tuning`.

The rule, for ``N`` samples of ``G`` groups of ``CG`` channels and ``S`` spatial positions:

1. Units. A program works on a *unit* of ``block_g`` consecutive groups of one sample. ``block_g`` is 1 when the
   spatial axis is the contiguous one (NCHW: a group is one contiguous run). When channels are innermost
   (channels_last), a group alone is a short strided run per position, so ``block_g`` groups are taken together
   to make tile rows of about ``channels_last_width`` contiguous channels (whole memory sectors).
2. Tile. Programs walk their unit in ``[block_s, block_g, block_c]`` tiles: ``block_c`` covers a group's
   channels (up to ``max_block_c``; wider groups loop), ``block_s`` the positions, about ``tile_elems`` in all.
3. One pass. If a whole unit fits in one program's registers (``<= max_onepass_elems``) and there are enough
   units to occupy the GPU (``units >= sm_count``) -- or a unit is a single tile anyway -- one program per unit
   computes the statistics and applies the epilogue from the same registers: x is read once. On channels_last,
   ``block_g`` is lowered (not below ``channels_last_min_width`` channels per row) if that makes a unit fit;
   on the split path likewise if that makes a unit fit in the L2 share of rule 5.
4. Split. Otherwise each unit's positions are cut into ``split`` chunks of ``chunk_s`` positions (a multiple of
   ``block_s``), one program each, so that ``units * split ~= programs_per_sm * sm_count``. Pass 1 writes
   per-chunk partial statistics, pass 2 merges them in a fixed order (deterministic, no atomics) and applies.
   When that gives ``split == 1`` (many units), one program per unit loops over it twice, statistics then
   apply, in a single launch.
5. L2 waves. Pass 2 reads x again. When all units together fit in ``l2_fraction`` of the L2 cache, or a single
   unit does not, one wave covers everything (in the second case the re-read comes from HBM: the "read-twice"
   roofline). Otherwise units are processed in waves of ``units_per_wave`` whose bytes fit in that share of L2,
   pass 1 then pass 2 per wave, so pass 2 finds x in L2. The split is then sized for one wave. At most
   ``max_waves`` waves (default 1: launches are kept to two per forward pass; more is a tuning choice).

Example::

    >>> p = plan(batch=1, num_groups=32, channels_per_group=16, spatial=65536, reread_bytes_per_elem=2,
    ...          device=DeviceSpec(sm_count=132, l2_bytes=50 * 2**20), tuning=Tuning(max_waves=16))
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
    max_block_c: int = 256  # most channels of one group in a tile; wider groups loop over channel blocks
    channels_last_width: int = 64  # channels per tile row when channels are innermost (128 B of bf16)
    channels_last_min_width: int = 16  # narrowest such row the one-pass path may shrink to
    programs_per_sm: int = 4  # split-path occupancy target
    max_split: int = 1024  # most programs per group
    l2_fraction: float = 0.5  # share of L2 a wave may fill (the rest absorbs y's writes and other traffic)
    # Most L2 waves per call. Each wave costs two launches (forward) or three (backward), so the default keeps a
    # call at 2 / 4 launches and pass 2 re-reads x from HBM when the units do not fit in L2 at once; more waves
    # keep that re-read in L2 at the price of launches (worth it only where a GPU measurement says so).
    max_waves: int = 1
    force_int64: bool = False  # 64-bit offsets even for small tensors (tests exercise that path this way)
    # The most bytes of x a flat backward program holds at once (16 warps: 8 bf16 or 4 float32 elements per
    # thread): ptxas keeps that within 128 registers without spilling (scripts/triton_compile_check.py: 99 for a
    # bf16 7x7 group); a whole bf16 14x14 group of 32 channels (6,272 elements) at 16 per thread spilled, and so
    # did a float32 7x7 group at 8, so larger groups are walked in chunks of this size.
    flat_backward_chunk_bytes: int = 8192

    def __post_init__(self) -> None:
        for name in (
            "max_onepass_elems",
            "tile_elems",
            "max_block_c",
            "programs_per_sm",
            "max_split",
            "channels_last_width",
            "channels_last_min_width",
            "max_waves",
            "flat_backward_chunk_bytes",
        ):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"Tuning.{name} must be >= 1, got {name}={value}")
        if not 0.0 < self.l2_fraction <= 1.0:
            raise ValueError(f"Tuning.l2_fraction must be in (0, 1], got l2_fraction={self.l2_fraction}")


@dataclass(frozen=True)
class Plan:
    """The launch configuration for one call."""

    one_pass: bool
    block_g: int  # groups per unit (power of two)
    block_c: int  # tile extent along a group's channels (power of two)
    block_s: int  # tile extent along spatial positions (power of two)
    group_blocks: int  # units per sample: ceil(G / block_g)
    units: int  # N * group_blocks
    split: int  # programs per unit (1 on the one-pass path)
    chunk_s: int  # spatial positions per program
    units_per_wave: int
    waves: int
    num_warps: int
    roofline: str  # "read-once", "l2-wave" or "read-twice": the bandwidth bound this plan can reach

    def describe(self) -> str:
        if self.one_pass:
            path = "one-pass"
        elif self.split == 1:
            path = "looped"  # one program per unit, statistics then apply
        else:
            path = f"split={self.split}x{self.chunk_s}"
        return (
            f"{path} tile={self.block_s}x{self.block_g}x{self.block_c} units={self.units} "
            f"waves={self.waves}x{self.units_per_wave} warps={self.num_warps} roofline={self.roofline}"
        )


def _num_warps(tile: int) -> int:
    if tile <= 1024:
        return 4
    if tile <= 8192:
        return 8
    return 16


def plan(
    batch: int,
    num_groups: int,
    channels_per_group: int,
    spatial: int,
    reread_bytes_per_elem: int,
    device: DeviceSpec,
    tuning: Tuning | None = None,
    *,
    channels_innermost: bool = False,
) -> Plan:
    """The launch plan for ``batch`` samples of ``num_groups`` groups of ``channels_per_group * spatial`` elements.

    ``reread_bytes_per_elem`` is what the second pass reads again per element (x's size in the forward, x's plus
    grad_y's in the backward); it decides the L2 waves. ``channels_innermost``: the channel stride is 1.
    """
    tuning = tuning or Tuning()
    for name, value in (
        ("batch", batch),
        ("num_groups", num_groups),
        ("channels_per_group", channels_per_group),
        ("spatial", spatial),
        ("sm_count", device.sm_count),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {name}={value}")
    cg, g = channels_per_group, num_groups
    block_c = min(next_power_of_2(cg), next_power_of_2(tuning.max_block_c))
    widest_g = 1
    narrowest_g = 1
    if channels_innermost and block_c < tuning.channels_last_width:
        widest_g = min(next_power_of_2(g), max(1, tuning.channels_last_width // block_c))
        narrowest_g = min(widest_g, max(1, tuning.channels_last_min_width // block_c))

    onepass_block_s = next_power_of_2(spatial)
    block_g = widest_g
    while block_g > narrowest_g and onepass_block_s * block_g * block_c > tuning.max_onepass_elems:
        block_g //= 2
    units = batch * cdiv(g, block_g)
    fits = block_c >= cg and onepass_block_s * block_g * block_c <= tuning.max_onepass_elems
    tiny = (
        fits and onepass_block_s * block_g * block_c <= tuning.tile_elems
    )  # one tile: splitting gains nothing
    if fits and (units >= device.sm_count or tiny):
        return Plan(
            one_pass=True,
            block_g=block_g,
            block_c=block_c,
            block_s=onepass_block_s,
            group_blocks=cdiv(g, block_g),
            units=units,
            split=1,
            chunk_s=spatial,
            units_per_wave=units,
            waves=1,
            num_warps=_num_warps(onepass_block_s * block_g * block_c),
            roofline="read-once",
        )

    budget = int(device.l2_bytes * tuning.l2_fraction)
    block_g = widest_g
    # Narrower units (not below the minimum row) when that lets one unit fit in the L2 share for the re-read.
    while block_g > narrowest_g and block_g * cg * spatial * reread_bytes_per_elem > budget:
        block_g //= 2
    units = batch * cdiv(g, block_g)
    row = block_g * block_c
    block_s = max(1, min(next_power_of_2(spatial), next_power_of_2(tuning.tile_elems) // row))
    unit_bytes = block_g * cg * spatial * reread_bytes_per_elem
    if units * unit_bytes <= budget:
        units_per_wave, roofline = units, "l2-wave"
    elif unit_bytes > budget:
        units_per_wave, roofline = units, "read-twice"
    else:
        units_per_wave, roofline = budget // unit_bytes, "l2-wave"
    if cdiv(units, units_per_wave) > tuning.max_waves:
        units_per_wave = cdiv(units, tuning.max_waves)
        if units_per_wave * unit_bytes > budget:
            roofline = "read-twice"
    waves = cdiv(units, units_per_wave)

    target_programs = tuning.programs_per_sm * device.sm_count
    split = min(max(1, cdiv(target_programs, units_per_wave)), cdiv(spatial, block_s), tuning.max_split)
    chunk_s = cdiv(cdiv(spatial, split), block_s) * block_s
    split = cdiv(spatial, chunk_s)  # no empty chunks
    if split == 1:
        # One program per unit anyway: it computes the statistics and then applies them itself, looping over its
        # unit twice (one launch, no partials). The second loop re-reads what the resident programs just read,
        # from L2 when their units fit there together.
        resident = min(units, target_programs)
        units_per_wave, waves = units, 1
        roofline = "l2-wave" if resident * unit_bytes <= budget else "read-twice"
    return Plan(
        one_pass=False,
        block_g=block_g,
        block_c=block_c,
        block_s=block_s,
        group_blocks=cdiv(g, block_g),
        units=units,
        split=split,
        chunk_s=chunk_s,
        units_per_wave=units_per_wave,
        waves=waves,
        num_warps=_num_warps(block_s * row),
        roofline=roofline,
    )


def forward_roofline(
    shape: tuple[int, ...],
    num_groups: int,
    element_size: int,
    channels_last: bool,
    device: DeviceSpec,
    tuning: Tuning | None = None,
) -> tuple[str, float]:
    """The forward's memory bound for an input: (roofline name, fraction of a copy's bandwidth it can reach).

    ``read-once`` and ``l2-wave`` read x from memory once (1.0 of the copy bandwidth: x in, y out);
    ``read-twice`` reads it twice (2/3). For benchmark reports.

    Example::

        >>> h100 = DeviceSpec(132, 50 * 2**20)
        >>> forward_roofline((1, 512, 256, 256), 32, 2, True, h100)  # one wave: x is read again from HBM
        ('read-twice', 0.6666666666666666)
        >>> forward_roofline((1, 512, 256, 256), 32, 2, True, h100, Tuning(max_waves=16))
        ('l2-wave', 1.0)
    """
    n, c = shape[0], shape[1]
    spatial = 1
    for size in shape[2:]:
        spatial *= size
    p = plan(
        n,
        num_groups,
        c // num_groups,
        spatial,
        element_size,
        device,
        tuning,
        channels_innermost=channels_last,
    )
    return p.roofline, (2.0 / 3.0 if p.roofline == "read-twice" else 1.0)
