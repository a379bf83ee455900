"""The work-split planner: every path is reachable, chunks tile the units exactly, waves cover all units."""

import pytest

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
