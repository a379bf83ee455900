"""The planner: every path of the work split is reachable, chunks tile the units exactly, waves cover all units;
the launch plan names the kernels (flat or tiled), their chunks, grids and launch counts."""

import pytest

from groupnorm.ops.triton.geometry import TensorLayout
from groupnorm.ops.triton.launch_plan import backward_plan, forward_plan
from groupnorm.ops.triton.planner import DeviceSpec, Tuning, cdiv, plan

pytestmark = pytest.mark.triton

H100 = DeviceSpec(sm_count=132, l2_bytes=50 * 2**20)


def test_small_groups_with_many_of_them_take_one_pass():
    p = plan(
        batch=32, num_groups=32, channels_per_group=8, spatial=28 * 28, reread_bytes_per_elem=2, device=H100
    )
    assert p.one_pass and p.split == 1 and p.roofline == "read-once"
    assert p.block_s >= 28 * 28 and p.block_c >= 8 and p.block_g == 1


WAVES = Tuning(max_waves=64)


def test_batch_one_vae_shape_splits_and_uses_l2_waves_when_allowed():
    # 1 x 512 x 256 x 256 bf16, G = 32: 32 groups of 2 MiB; one program per group would starve 132 SMs.
    p = plan(1, 32, 16, 256 * 256, 2, H100, WAVES)
    assert not p.one_pass
    assert p.roofline == "l2-wave" and p.waves > 1
    assert p.units_per_wave * 16 * 256 * 256 * 2 <= H100.l2_bytes * Tuning().l2_fraction
    assert p.units_per_wave * p.split >= H100.sm_count  # each wave still fills the GPU


def test_default_is_one_wave_read_twice():
    # The same shape by default: one wave (two forward launches), pass 2 re-reading x from HBM.
    p = plan(1, 32, 16, 256 * 256, 2, H100)
    assert not p.one_pass and p.waves == 1 and p.units_per_wave == p.units
    assert p.roofline == "read-twice" and p.units * p.split >= H100.sm_count


def test_many_units_too_big_for_one_pass_loop_in_one_program():
    # 32 x 256 x 56 x 56: 1024 groups of 8 x 3136, more than one program holds; splitting gains nothing.
    p = plan(32, 32, 8, 56 * 56, 2, H100)
    assert not p.one_pass and p.split == 1 and p.chunk_s >= 56 * 56 and p.waves == 1
    assert p.describe().startswith("looped")


def test_channels_last_takes_several_groups_per_row():
    # channels innermost, 8 channels per group: a unit of 8 groups reads rows of 64 contiguous channels.
    p = plan(1, 32, 16, 256 * 256, 2, H100, WAVES, channels_innermost=True)
    assert p.block_g * p.block_c == Tuning().channels_last_width
    assert p.group_blocks == 32 // p.block_g and p.units == p.group_blocks
    assert p.units_per_wave * p.block_g * 16 * 256 * 256 * 2 <= H100.l2_bytes * Tuning().l2_fraction


def test_channels_last_narrows_units_to_fit_one_pass():
    # 32 x 256 x 28 x 28 (G = 32): a unit of 8 groups would hold 8 x 8 x 1024 (padded) elements, too many.
    p = plan(32, 32, 8, 28 * 28, 2, H100, channels_innermost=True)
    assert p.one_pass
    assert Tuning().channels_last_min_width <= p.block_g * p.block_c < Tuning().channels_last_width
    assert p.block_s * p.block_g * p.block_c <= Tuning().max_onepass_elems


def test_group_larger_than_l2_reads_twice():
    p = plan(2, 1, 64, 1024 * 1024, 2, H100)
    assert not p.one_pass and p.roofline == "read-twice" and p.waves == 1


@pytest.mark.parametrize("channels_innermost", [False, True])
@pytest.mark.parametrize("spatial", [1, 7, 49, 1000, 4096, 65537])
@pytest.mark.parametrize("batch,groups", [(1, 1), (1, 3), (2, 32)])
def test_chunks_tile_each_unit_exactly(batch, groups, spatial, channels_innermost):
    p = plan(batch, groups, 16, spatial, 4, DeviceSpec(sm_count=8, l2_bytes=1 << 16), Tuning(max_onepass_elems=16),
             channels_innermost=channels_innermost)  # fmt: skip
    assert p.units == batch * cdiv(groups, p.block_g) and p.block_g <= max(1, 2 * groups - 1)
    if p.one_pass:
        assert p.block_s >= spatial
        return
    assert p.chunk_s % p.block_s == 0
    assert (p.split - 1) * p.chunk_s < spatial <= p.split * p.chunk_s  # no empty chunk, nothing left over
    assert p.waves == cdiv(p.units, p.units_per_wave)


def test_wide_groups_loop_over_channel_blocks():
    p = plan(4, 1, 2048, 49, 2, H100)  # G = 1 on a 2048-channel layer: a layer norm
    assert p.block_c == Tuning().max_block_c
    assert not p.one_pass


@pytest.mark.parametrize(
    "field,value", [("tile_elems", 0), ("max_split", 0), ("channels_last_width", 0), ("l2_fraction", 1.5)]
)
def test_bad_tuning_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        Tuning(**{field: value})


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="channels_per_group"):
        plan(4, 2, 0, 10, 2, H100)


# --- The launch plan: which kernels run, with what grids (launch_plan, pure Python as the work split) ---

BF16 = 2


def _x(shape, layout, element_size=BF16):
    return getattr(TensorLayout, layout)(shape, element_size)


def _kernels(p):
    return [launch.kernel for launch in p.launches]


def test_sd_vae_splits_into_partial_statistics_then_apply():
    # 1 x 512 x 64 x 64 bf16, G = 32: 32 groups of 64 K elements on 132 SMs: split 16 ways, one wave.
    f = forward_plan(_x((1, 512, 64, 64), "contiguous"), 32, H100)
    assert f.variant == "tiled" and f.work.split == 16 and f.work.units == 32
    assert [(launch.kernel, launch.grid, launch.start) for launch in f.launches] == [
        ("fwd_partial_stats_kernel", (512,), 0),
        ("fwd_apply_kernel", (512,), 0),
    ]
    assert f.partials == 2 * 32 * 16  # (mean, M2) per program
    assert f.launches[1].meta["BLOCK_K"] == 16 and not f.launches[1].meta["FUSED_STATS"]
    b = backward_plan(_x((1, 512, 64, 64), "contiguous"), _x((1, 512, 64, 64), "contiguous"), 32, H100)
    assert _kernels(b) == ["bwd_partial_kernel", "bwd_total_kernel", "bwd_dx_kernel", "bwd_param_kernel"]
    assert [launch.grid for launch in b.launches] == [(512,), (32,), (512,), (8,)]  # param: 512 / 64 channels
    assert b.partial_shape == (1, b.work.split, 512)


def test_sd_vae_channels_last_takes_rows_of_64_channels():
    f = forward_plan(_x((1, 512, 64, 64), "channels_last"), 32, H100)
    meta = f.launches[0].meta
    assert f.variant == "tiled" and meta["BLOCK_G"] * meta["BLOCK_CG"] == Tuning().channels_last_width
    assert f.work.units == 32 // meta["BLOCK_G"]
    assert [launch.grid for launch in f.launches] == [(f.work.units * f.work.split,)] * 2


# ResNet-50's stages at batch 32, bf16 on an H100: NCHW groups are contiguous runs, so where one program holds a
# group the flat kernel runs; channels_last always takes the tiled kernels.
RESNET = {
    "s1": ((32, 256, 56, 56), ["fwd_apply_kernel"], ["bwd_dx_kernel", "bwd_param_kernel"]),
    "s2": ((32, 512, 28, 28), ["fwd_onepass_flat_kernel"], ["bwd_dx_kernel", "bwd_param_kernel"]),
    "s3": ((32, 1024, 14, 14), ["fwd_onepass_flat_kernel"], ["bwd_onepass_flat_kernel", "bwd_param_kernel"]),
    "s4": ((32, 2048, 7, 7), ["fwd_onepass_flat_kernel"], ["bwd_onepass_flat_kernel", "bwd_param_kernel"]),
}
RESNET_CHANNELS_LAST = {
    "s1": (["fwd_partial_stats_kernel", "fwd_apply_kernel"], 4),
    "s2": (["fwd_onepass_kernel"], 4),
    "s3": (["fwd_onepass_kernel"], 2),
    "s4": (["fwd_onepass_kernel"], 2),
}


@pytest.mark.parametrize("stage", list(RESNET))
def test_resnet_stages_nchw(stage):
    shape, forward_kernels, backward_kernels = RESNET[stage]
    x = _x(shape, "contiguous")
    f, b = forward_plan(x, 32, H100), backward_plan(x, x, 32, H100)
    assert _kernels(f) == forward_kernels and _kernels(b) == backward_kernels
    assert f.variant == ("flat" if forward_kernels == ["fwd_onepass_flat_kernel"] else "tiled")
    assert b.variant == ("flat" if backward_kernels[0] == "bwd_onepass_flat_kernel" else "tiled")
    assert f.launches[0].grid == (32 * 32,)  # one program per group, whichever kernel
    assert b.launches[-1].grid == (shape[1] // 64,) and b.launches[-1].meta["BLOCK_N"] == 32


@pytest.mark.parametrize("stage", list(RESNET_CHANNELS_LAST))
def test_resnet_stages_channels_last(stage):
    shape = RESNET[stage][0]
    forward_kernels, backward_launches = RESNET_CHANNELS_LAST[stage]
    x = _x(shape, "channels_last")
    f, b = forward_plan(x, 32, H100), backward_plan(x, x, 32, H100)
    assert f.variant == b.variant == "tiled"
    assert _kernels(f) == forward_kernels and len(b.launches) == backward_launches
    assert f.launches[0].grid == (f.work.units * f.work.split,)


def test_flat_kernels_hold_a_group_in_registers_or_walk_it_in_chunks():
    # The backward's flat program holds 8 KiB of x at once: 4096 bf16 elements, 2048 float32 ones.
    s3 = _x((32, 1024, 14, 14), "contiguous")  # groups of 32 x 196 = 6272 elements
    b = backward_plan(s3, s3, 32, H100)
    meta = b.launches[0].meta
    assert b.flat_chunk == 4096 and meta["BLOCK_E"] == 4096 and not meta["ONE_CHUNK"]
    assert meta["num_warps"] == 16
    s4 = _x((32, 2048, 7, 7), "contiguous")  # 64 x 49 = 3136 elements: one chunk
    meta = backward_plan(s4, s4, 32, H100).launches[0].meta
    assert meta["BLOCK_E"] == 4096 and meta["ONE_CHUNK"]
    s4_fp32 = _x((32, 2048, 7, 7), "contiguous", 4)
    b = backward_plan(s4_fp32, s4_fp32, 32, H100)
    meta = b.launches[0].meta
    assert b.flat_chunk == 2048 and meta["BLOCK_E"] == 2048 and not meta["ONE_CHUNK"]
    # The forward's flat program holds the whole group: BLOCK_E covers it.
    assert forward_plan(s3, 32, H100).launches[0].meta["BLOCK_E"] == 8192


@pytest.mark.parametrize("chunk_bytes,expected", [(64, 16), (3000, 512), (1, 1), (8192, 2048)])
def test_flat_backward_chunk_is_a_power_of_two_within_the_tuned_bytes(chunk_bytes, expected):
    x = _x((3, 12, 7, 5), "contiguous", 4)  # float32 groups of 4 x 35 = 140 elements
    b = backward_plan(x, x, 3, DeviceSpec(1, 1 << 30), Tuning(flat_backward_chunk_bytes=chunk_bytes))
    meta = b.launches[0].meta
    assert b.variant == "flat" and b.flat_chunk == expected
    assert meta["BLOCK_E"] == min(expected, 256) and meta["ONE_CHUNK"] == (140 <= expected)


def test_channels_last_with_4_channels_per_group_reads_rows_of_16_groups():
    # 2 x 128 x 16 x 16, G = 32: 4 channels (8 bytes of bf16) per group; a unit of 16 groups reads 128-byte rows.
    x = _x((2, 128, 16, 16), "channels_last")
    f = forward_plan(x, 32, H100)
    meta = f.launches[0].meta
    assert f.variant == "tiled" and (meta["BLOCK_G"], meta["BLOCK_CG"], meta["EVEN_CG"]) == (16, 4, True)
    assert f.work.units == 2 * 32 // 16
    # The same shape in NCHW: each group a run of 4 x 256 elements, one flat program each.
    nchw = forward_plan(_x((2, 128, 16, 16), "contiguous"), 32, H100)
    assert _kernels(nchw) == ["fwd_onepass_flat_kernel"] and nchw.launches[0].grid == (64,)
    assert nchw.launches[0].meta["BLOCK_E"] == 1024


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_video_5d_splits_each_unit(layout):
    # 1 x 128 x 20 x 64 x 64 (channels_last_3d when channels innermost): few units, long spatial runs.
    x = _x((1, 128, 20, 64, 64), layout)
    f, b = forward_plan(x, 32, H100), backward_plan(x, x, 32, H100)
    assert f.variant == b.variant == "tiled"
    assert _kernels(f) == ["fwd_partial_stats_kernel", "fwd_apply_kernel"]
    assert _kernels(b) == ["bwd_partial_kernel", "bwd_total_kernel", "bwd_dx_kernel", "bwd_param_kernel"]
    assert f.work.block_g == (16 if layout == "channels_last" else 1)  # 16 groups of 4 channels: 64 per row
    programs = f.work.units * f.work.split
    assert f.launches[0].grid == (programs,) and programs >= H100.sm_count


def test_64_bit_offsets_once_a_tensor_spans_2_to_the_31_elements():
    big = _x((2, 64, 4096, 4096), "contiguous")  # 2**31 elements
    for p in (forward_plan(big, 32, H100), backward_plan(big, big, 32, H100)):
        assert p.int64 and all(launch.meta["INT64"] for launch in p.launches)
    edge = _x((1, 1, 2**31 - 1), "contiguous")  # the last offset still fits in 32 bits
    assert not forward_plan(edge, 1, H100).int64
    assert forward_plan(_x((1, 1, 2**31), "contiguous"), 1, H100).int64
    small = _x((2, 64, 8, 8), "contiguous")
    assert not forward_plan(small, 32, H100).int64
    assert forward_plan(small, 32, H100, Tuning(force_int64=True)).int64
    # Every tensor the kernels address counts (here a residual whose samples lie 2**31 elements apart).
    wide_res = TensorLayout((2, 64, 8, 8), (2**31, 64, 8, 1), BF16)
    assert forward_plan(small, 32, H100, residual=wide_res).int64


def test_flat_takes_the_residual_as_a_run_or_by_its_strides():
    x = _x((2, 128, 16, 16), "contiguous")
    f = forward_plan(x, 32, H100, residual=x)
    assert f.launches[0].meta["RES_FLAT"] and f.residual_strides == f.x_strides
    f = forward_plan(x, 32, H100, residual=_x((2, 128, 16, 16), "channels_last"))
    assert f.variant == "flat" and not f.launches[0].meta["RES_FLAT"]
    assert f.residual_strides == (32768, 1, 128)
    assert forward_plan(x, 32, H100).residual_strides == (0, 0, 0)


def test_backward_is_flat_only_when_grad_y_is_a_run_too():
    x = _x((2, 128, 16, 16), "contiguous")
    assert backward_plan(x, x, 32, H100).variant == "flat"
    b = backward_plan(_x((2, 128, 16, 16), "channels_last"), x, 32, H100)
    assert b.variant == "tiled" and _kernels(b) == ["bwd_onepass_kernel", "bwd_param_kernel"]


def test_backward_launches_only_what_is_wanted():
    x = _x((1, 512, 64, 64), "contiguous")  # the split path: partial, total, dx per wave
    assert _kernels(backward_plan(x, x, 32, H100, param_grads=False)) == [
        "bwd_partial_kernel",
        "bwd_total_kernel",
        "bwd_dx_kernel",
    ]
    assert _kernels(backward_plan(x, x, 32, H100, input_grads=False)) == [
        "bwd_partial_kernel",
        "bwd_total_kernel",
        "bwd_param_kernel",
    ]
    assert backward_plan(x, x, 32, H100, input_grads=False, param_grads=False).launches == ()
    # One-program paths launch their kernel for the parameter sums alone too.
    s4 = _x((32, 2048, 7, 7), "contiguous")
    assert _kernels(backward_plan(s4, s4, 32, H100, input_grads=False)) == [
        "bwd_onepass_flat_kernel",
        "bwd_param_kernel",
    ]


def test_waves_launch_in_turn_over_every_unit():
    # 1 x 512 x 256 x 256 bf16 with up to 16 waves: each wave's units fit in L2 for pass 2.
    x = _x((1, 512, 256, 256), "contiguous")
    f = forward_plan(x, 32, H100, Tuning(max_waves=16))
    p = f.work
    assert p.waves > 1 and len(f.launches) == 2 * p.waves
    stats, applies = f.launches[::2], f.launches[1::2]
    assert {launch.kernel for launch in stats} == {"fwd_partial_stats_kernel"}
    assert [launch.start for launch in stats] == [launch.start for launch in applies]
    assert [launch.start for launch in stats] == list(range(0, p.units, p.units_per_wave))
    assert sum(launch.grid[0] for launch in stats) == p.units * p.split  # every unit's chunks, once
    assert [launch.grid for launch in stats] == [launch.grid for launch in applies]
    b = backward_plan(x, x, 32, H100, Tuning(max_waves=16))
    assert len(b.launches) == 3 * b.work.waves + 1
    totals = [launch for launch in b.launches if launch.kernel == "bwd_total_kernel"]
    assert sum(launch.grid[0] for launch in totals) == b.work.units  # one program per unit


def test_wide_groups_take_uneven_channel_blocks():
    x = _x((4, 2048, 7, 7), "contiguous")  # G = 1: a layer norm over 2048 channels
    f = forward_plan(x, 1, H100)
    meta = f.launches[0].meta
    assert f.variant == "tiled" and meta["BLOCK_CG"] == 256 and not meta["EVEN_CG"]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape,groups", [((2, 8, 5, 5), 4), ((3, 12, 7, 5), 3), ((4, 32), 8), ((40, 64, 2), 1),
                                          ((1, 64, 96, 96), 32), ((2, 64, 8, 16, 16), 32)])  # fmt: skip
@pytest.mark.parametrize("device", [H100, DeviceSpec(4, 256 * 1024), DeviceSpec(2, 4096)])
def test_launch_counts_follow_the_path(shape, groups, layout, device):
    tuning = Tuning(max_waves=64)
    x = _x(shape, layout)
    f, b = forward_plan(x, groups, device, tuning), backward_plan(x, x, groups, device, tuning)
    for p, per_wave in ((f, 2), (b, 3)):
        one_program = p.work.one_pass or p.work.split == 1
        main = 1 if one_program else per_wave * p.work.waves
        assert p.launch_count == main + (p is b)  # the backward's parameter gradients: one more
        assert p.variant == "tiled" or p.work.one_pass
        assert all(launch.grid[0] >= 1 for launch in p.launches)


def test_layouts_the_kernels_cannot_address_are_refused():
    sliced = TensorLayout((2, 8, 3, 6), (288, 36, 12, 1), BF16)  # every other row: H and W do not collapse
    with pytest.raises(ValueError, match="stride"):
        forward_plan(sliced, 4, H100)
    with pytest.raises(ValueError, match="C=6 .* G=4"):
        forward_plan(_x((2, 6, 3), "contiguous"), 4, H100)
