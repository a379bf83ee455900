"""DistributedGroupNorm under torch.distributed (gloo, CPU): the parts of one image on different ranks compute what
GroupNorm computes on the whole image on one rank, forward and backward, with one collective per pass.

One spawn of three processes runs every check twice, over all three ranks and over a group of two (spawning costs
more than the checks); a failed check raises inside a worker and fails the test with the worker's traceback.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import groupnorm

# uneven spatial parts, one list per world size, for a rank-4 input split along H and a rank-5 one along W
PARTS_4D = {2: [5, 2], 3: [1, 4, 2]}
PARTS_5D = {2: [2, 4], 3: [3, 1, 2]}


def _seeded(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _my_part(t: torch.Tensor, sizes: list[int], dim: int, rank: int) -> torch.Tensor:
    return t.split(sizes, dim=dim)[rank].detach().clone()


def _check_parts_equal_whole(rank: int, world: int, group, rank5: bool) -> None:
    shape, dim, sizes = (
        ((2, 8, 3, 4, 6), 4, PARTS_5D[world]) if rank5 else ((2, 16, 7, 5), 2, PARTS_4D[world])
    )
    fmt = torch.channels_last_3d if rank5 else torch.channels_last
    c, groups = shape[1], 4
    x = (3 * _seeded(*shape, seed=0) + 1).contiguous(memory_format=fmt)
    residual, dy = _seeded(*shape, seed=1), _seeded(*shape, seed=2)
    scale, shift = 0.3 * _seeded(shape[0], c, seed=3), _seeded(shape[0], c, seed=4)

    reference = groupnorm.GroupNorm(groups, c, activation="silu")
    with torch.no_grad():
        reference.weight.copy_(_seeded(c, seed=5))
        reference.bias.copy_(_seeded(c, seed=6))
    whole = [t.clone().requires_grad_() for t in (x, residual, scale, shift)]
    y_whole = reference(whole[0], residual=whole[1], scale=whole[2], shift=whole[3])
    y_whole.backward(dy)

    norm = groupnorm.DistributedGroupNorm(groups, c, activation="silu", process_group=group)
    norm.load_state_dict(reference.state_dict())
    x_part = _my_part(x, sizes, dim, rank).contiguous(memory_format=fmt).requires_grad_()
    r_part = _my_part(residual, sizes, dim, rank).requires_grad_()
    s, t = scale.clone().requires_grad_(), shift.clone().requires_grad_()
    y = norm(x_part, residual=r_part, scale=s, shift=t)
    assert y.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(y, _my_part(y_whole, sizes, dim, rank), rtol=1e-5, atol=1e-5)
    y.backward(_my_part(dy, sizes, dim, rank))
    torch.testing.assert_close(x_part.grad, _my_part(whole[0].grad, sizes, dim, rank), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r_part.grad, _my_part(whole[1].grad, sizes, dim, rank), rtol=1e-5, atol=1e-6)
    # parameter, scale and shift gradients are each rank's share: summed over ranks they are the whole image's
    for got, want in [
        (norm.weight.grad, reference.weight.grad),
        (norm.bias.grad, reference.bias.grad),
        (s.grad, whole[2].grad),
        (t.grad, whole[3].grad),
    ]:
        total = got.clone()
        dist.all_reduce(total, group=group)
        torch.testing.assert_close(total, want, rtol=1e-4, atol=1e-4)


class _Counting:
    """Counts dist.all_gather calls (the only collective the layer uses)."""

    def __init__(self) -> None:
        self.calls = 0
        self._original = dist.all_gather

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._original(*args, **kwargs)


def _check_one_collective_per_pass(rank: int, world: int, group) -> None:
    norm = groupnorm.DistributedGroupNorm(2, 8, process_group=group)
    counter = _Counting()
    dist.all_gather = counter
    try:
        x = _seeded(2, 8, 3 + rank, 4, seed=rank).requires_grad_()
        norm(x).sum().backward()  # first call: agrees on the shape first
        first = counter.calls
        counter.calls = 0
        x.grad = None
        y = norm(x)
        forward_calls = counter.calls
        y.sum().backward()
        backward_calls = counter.calls - forward_calls
    finally:
        dist.all_gather = counter._original
    assert (first, forward_calls, backward_calls) == (3, 1, 1), (first, forward_calls, backward_calls)


def _expect_error(fn, *needles: str) -> None:
    try:
        fn()
    except ValueError as e:
        for needle in needles:
            assert needle in str(e), f"{needle!r} not in {e}"
    else:
        raise AssertionError(f"no ValueError (expected one containing {needles})")


def _check_disagreeing_ranks_raise(rank: int, world: int, group) -> None:
    last = world - 1
    # N differs, on a layer's first call
    norm = groupnorm.DistributedGroupNorm(2, 8, process_group=group)
    n = 3 if rank == last else 2
    _expect_error(
        lambda: norm(torch.randn(n, 8, 4, 4)), "disagree on N (the batch size)", f"rank {last} has N=3"
    )
    # N differs after the ranks agreed on a shape: the layer still raises, on every rank, instead of mismatching
    norm(torch.randn(2, 8, 4, 4))
    _expect_error(lambda: norm(torch.randn(n, 8, 4, 4)), f"rank {last} has N=3", "rank 0 has N=2")
    # all ranks change shape together: allowed
    assert norm(torch.randn(5, 8, 2, 3)).shape == (5, 8, 2, 3)
    # C differs (layers built differently)
    c = 16 if rank == last else 8
    wide = groupnorm.DistributedGroupNorm(4, c, process_group=group)
    _expect_error(lambda: wide(torch.randn(2, c, 4, 4)), "disagree on C (the channel count)", f"has C={c}")
    # G differs
    g = 2 if rank == last else 4
    grouped = groupnorm.DistributedGroupNorm(g, 8, process_group=group)
    _expect_error(
        lambda: grouped(torch.randn(2, 8, 4, 4)), "disagree on G (the group count)", "rank 0 has G=4"
    )


def _model(group=None) -> nn.Module:
    torch.manual_seed(0)  # 1x1 convolutions: the spatial parts need no halo
    # a fused GroupNorm (what groupnorm.patch makes of GroupNorm + SiLU) and a torch one
    fused = groupnorm.GroupNorm(4, 8, activation="silu")
    model = nn.Sequential(nn.Conv2d(3, 8, 1), fused, nn.Conv2d(8, 4, 1), nn.GroupNorm(2, 4))
    if group is not None:
        model, summary = groupnorm.convert_norms(model, source="gn", process_group=group, return_report=True)
        assert len(summary.replaced) == 2
        assert all(type(model[i]) is groupnorm.DistributedGroupNorm for i in (1, 3))
        assert model[1].activation == "silu"
    return model


def _check_ddp_and_convert(rank: int, world: int, group) -> None:
    sizes = PARTS_4D[world]
    x, weights = _seeded(2, 3, 7, 6, seed=10), _seeded(2, 4, 7, 6, seed=11)
    single = _model()
    (single(x) * weights).sum().backward()

    ddp = nn.parallel.DistributedDataParallel(_model(group), process_group=group)
    part = _my_part(x, sizes, 2, rank)
    (ddp(part) * _my_part(weights, sizes, 2, rank)).sum().backward()
    # DDP averages over ranks; each rank's loss is its part of the whole image's loss
    for (name, p), q in zip(ddp.module.named_parameters(), single.parameters()):
        torch.testing.assert_close(p.grad * world, q.grad, rtol=1e-4, atol=1e-5, msg=name)
    # a copy of the model (an EMA model, say) shares the process group, which cannot be copied
    ema = copy.deepcopy(ddp.module)
    assert ema[1].process_group is group and ema[1].weight is not ddp.module[1].weight
    with torch.no_grad():
        torch.testing.assert_close(ema(part), ddp.module(part))


def _worker(rank: int, world: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        pair = dist.new_group([0, 1])  # every rank takes part in creating it
        for group, ranks in ((dist.group.WORLD, world), (pair, 2)):
            if rank >= ranks:
                continue
            _check_parts_equal_whole(rank, ranks, group, rank5=False)
            _check_parts_equal_whole(rank, ranks, group, rank5=True)
            _check_one_collective_per_pass(rank, ranks, group)
            _check_disagreeing_ranks_raise(rank, ranks, group)
            _check_ddp_and_convert(rank, ranks, group)
        # rank 2 skips the pair's checks and would tear gloo down while ranks 0 and 1 still talk: that aborts it
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # three spawned processes: ~10 s of CPU, mostly importing torch
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_parts_on_ranks_equal_the_whole_image_with_three_and_two_ranks(tmp_path):
    mp.start_processes(_worker, args=(3, str(tmp_path / "init")), nprocs=3, start_method="spawn")


def test_uninitialized_process_group_is_an_error():
    assert not dist.is_initialized()
    norm = groupnorm.DistributedGroupNorm(2, 8)
    with pytest.raises(RuntimeError, match=r"init_process_group\(...\) first \(got process_group=None"):
        norm(torch.randn(1, 8, 2, 2))


def test_state_dict_and_repr_are_group_norms():
    norm = groupnorm.DistributedGroupNorm(4, 8, activation="silu")
    assert isinstance(norm, groupnorm.GroupNorm) and isinstance(norm, nn.GroupNorm)
    assert norm.state_dict().keys() == nn.GroupNorm(4, 8).state_dict().keys()
    assert repr(norm) == "DistributedGroupNorm(4, 8, eps=1e-05, affine=True, bias=True, activation='silu')"
    norm.load_state_dict(groupnorm.GroupNorm(4, 8).state_dict())


def test_convert_norms_process_group_needs_a_group_norm_kind():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8))
    with pytest.raises(
        ValueError, match="kind must give group norms .* got kind='syncbn' building SyncBatchNorm at 1"
    ):
        groupnorm.convert_norms(model, "syncbn", process_group=object())
    assert isinstance(model[1], nn.BatchNorm2d)  # refused before anything changed
    model = groupnorm.convert_norms(model, "gn", num_groups=4, process_group=object())
    assert type(model[1]) is groupnorm.DistributedGroupNorm
