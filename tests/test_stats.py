"""Statistics as a value: split an input along a spatial axis, merge the parts' statistics, normalize each part.

The split result must equal ``group_norm`` on the whole input, forward and backward, in every layout and rank.
"""

from __future__ import annotations

import pytest
import torch

import groupnorm
from groupnorm import GroupStats, group_stats

# (shape, groups, split axis, part sizes along it); uneven parts everywhere
SPLITS = [
    ((2, 8, 11), 4, 2, (3, 8)),  # rank 3, two uneven parts
    ((2, 12, 7, 9), 3, 2, (2, 4, 1)),  # rank 4, split along H, a one-row part
    ((1, 8, 6, 10), 8, 3, (5, 5)),  # rank 4, split along W, instance norm (G == C)
    ((2, 8, 3, 4, 5), 2, 4, (1, 3, 1)),  # rank 5 (video), split along W
    ((2, 8, 4, 5, 3), 4, 2, (3, 1)),  # rank 5, split along T
]


def _parts(x: torch.Tensor, axis: int, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    return list(x.split(list(sizes), dim=axis))


def _memory_format(rank: int) -> torch.memory_format:
    return {4: torch.channels_last, 5: torch.channels_last_3d}[rank]


def _make_input(shape, channels_last: bool, dtype=torch.float32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 3 + 2).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=_memory_format(len(shape)))
    return x


def _layouts(shape):
    return [False, True] if len(shape) in (4, 5) else [False]


CASES = [(s, g, a, p, cl) for (s, g, a, p) in SPLITS for cl in _layouts(s)]
IDS = [f"{s}-G{g}-axis{a}-{'cl' if cl else 'contig'}" for (s, g, a, p, cl) in CASES]


@pytest.mark.parametrize("shape, groups, axis, sizes, channels_last", CASES, ids=IDS)
def test_merged_statistics_equal_the_whole_inputs(shape, groups, axis, sizes, channels_last):
    x = _make_input(shape, channels_last, torch.float64)
    whole = group_stats(x, groups)
    merged = GroupStats.merge(*(group_stats(p, groups) for p in _parts(x, axis, sizes)))
    torch.testing.assert_close(merged.count, whole.count, rtol=0, atol=0)
    torch.testing.assert_close(merged.mean, whole.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(merged.m2, whole.m2, rtol=1e-12, atol=1e-12)
    reference = x.reshape(shape[0], groups, -1)
    torch.testing.assert_close(whole.var, reference.var(dim=-1, correction=0), rtol=1e-12, atol=1e-12)


def test_merge_is_exact_when_the_mean_dwarfs_the_spread():
    # E[x^2] - E[x]^2 in float32 would lose every digit here; Chan's update keeps the variance
    x = 1e4 + torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    parts = x.split([5, 11], dim=3)
    merged = group_stats(parts[0], 2).merge(group_stats(parts[1], 2))
    expected = x.double().reshape(1, 2, -1).var(dim=-1, correction=0)
    torch.testing.assert_close(merged.var.double(), expected, rtol=1e-3, atol=0)


def test_merge_is_deterministic_and_an_empty_part_changes_nothing():
    x = torch.randn(2, 8, 9, 7)
    parts = x.split([4, 0, 5], dim=2)
    stats = [group_stats(p, 4) for p in parts]
    assert stats[1].count.eq(0).all()
    a, b = GroupStats.merge(*stats), stats[0].merge(stats[1], stats[2])
    for name in ("count", "mean", "m2"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    without_empty = stats[0].merge(stats[2])
    assert torch.equal(a.mean, without_empty.mean) and torch.equal(a.m2, without_empty.m2)


def test_statistics_dtype_is_the_accumulation_dtype():
    assert group_stats(torch.randn(2, 4, 3), 2).dtype == torch.float32
    assert group_stats(torch.randn(2, 4, 3, dtype=torch.bfloat16), 2).dtype == torch.float32
    assert group_stats(torch.randn(2, 4, 3, dtype=torch.float64), 2).dtype == torch.float64
    stats = group_stats(torch.randn(3, 12), group_size=4)  # rank 2: groups of channels only
    assert stats.shape == (3, 3) and stats.count.eq(4).all()


EPILOGUES = [
    dict(),
    dict(activation="silu", affine=True),
    dict(activation="gelu", affine=True, scale_shift=True),
    dict(activation="relu", residual=True, affine=True, scale_shift=True),
]


def _epilogue_tensors(x: torch.Tensor, spec: dict, seed: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, c = x.shape[:2]
    out: dict = {"activation": spec.get("activation")}
    if spec.get("affine"):
        out["weight"] = torch.randn(c, generator=g).requires_grad_()
        out["bias"] = torch.randn(c, generator=g).requires_grad_()
    if spec.get("scale_shift"):
        out["scale"] = (0.5 * torch.randn(n, c, generator=g)).requires_grad_()
        out["shift"] = torch.randn(n, c, generator=g).requires_grad_()
    if spec.get("residual"):
        out["residual"] = torch.randn(x.shape, generator=g).to(memory_format=_format_of(x)).requires_grad_()
    return out


def _format_of(x: torch.Tensor) -> torch.memory_format:
    if x.dim() in (4, 5) and not x.is_contiguous():
        return _memory_format(x.dim())
    return torch.contiguous_format


def _split_kwargs(kwargs: dict, axis: int, sizes) -> list[dict]:
    """Per-part keyword arguments: the residual is split like x, everything else is shared."""
    parts = [dict(kwargs) for _ in sizes]
    if "residual" in kwargs:
        for part, r in zip(parts, kwargs["residual"].split(list(sizes), dim=axis)):
            part["residual"] = r
    return parts


def _grads(tensors: dict) -> dict:
    return {
        k: v.grad.clone() for k, v in tensors.items() if isinstance(v, torch.Tensor) and v.grad is not None
    }


@pytest.mark.parametrize("spec", EPILOGUES, ids=lambda s: "-".join(sorted(s)) or "plain")
@pytest.mark.parametrize("shape, groups, axis, sizes, channels_last", CASES, ids=IDS)
def test_split_normalization_equals_whole_forward_and_backward(
    shape, groups, axis, sizes, channels_last, spec
):
    x_whole = _make_input(shape, channels_last).requires_grad_()
    kwargs = _epilogue_tensors(x_whole, spec)
    y_whole = groupnorm.group_norm(x_whole, groups, **kwargs)
    dy = torch.randn(y_whole.shape, generator=torch.Generator().manual_seed(5))
    y_whole.backward(dy)
    expected = {"x": x_whole.grad.clone(), **_grads(kwargs)}
    for v in kwargs.values():
        if isinstance(v, torch.Tensor):
            v.grad = None

    x = x_whole.detach().clone().requires_grad_()
    parts = _parts(x, axis, sizes)
    merged = GroupStats.merge(*(group_stats(p, groups) for p in parts))
    outs = [
        groupnorm.group_norm(p, groups, stats=merged, **kw)
        for p, kw in zip(parts, _split_kwargs(kwargs, axis, sizes))
    ]
    for out, part in zip(outs, parts):
        assert out.dtype == part.dtype and out.shape == part.shape
    if channels_last and sizes[0] > 1:
        assert outs[0].is_contiguous(memory_format=_memory_format(len(shape)))
    y = torch.cat(outs, dim=axis)
    torch.testing.assert_close(y, y_whole.detach(), rtol=1e-5, atol=2e-5)
    y.backward(dy)
    got = {"x": x.grad, **_grads(kwargs)}
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=5e-5, msg=f"gradient of {name}")


@pytest.mark.parametrize("spec", EPILOGUES[1:], ids=lambda s: "-".join(sorted(s)))
def test_explicit_two_sum_backward_equals_autograd(spec):
    shape, groups, axis, sizes = (2, 8, 6, 7), 4, 3, (2, 5)
    x = _make_input(shape, channels_last=True).requires_grad_()
    kwargs = _epilogue_tensors(x, spec)
    y = groupnorm.group_norm(x, groups, **kwargs)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
    y.backward(dy)

    with torch.no_grad():
        parts, grads = _parts(x.detach(), axis, sizes), dy.split(list(sizes), dim=axis)
        part_kwargs = [{k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
                       for kw in _split_kwargs(kwargs, axis, sizes)]  # fmt: skip
        stats = GroupStats.merge(*(group_stats(p, groups) for p in parts))
        sums = groupnorm.BackwardSums.merge(
            *(
                groupnorm.group_norm_backward_sums(g, p, stats, **kw)
                for g, p, kw in zip(grads, parts, part_kwargs)
            )
        )
        results = [
            groupnorm.group_norm_part_backward(g, p, stats, sums, **kw)
            for g, p, kw in zip(grads, parts, part_kwargs)
        ]
    torch.testing.assert_close(torch.cat([r.input for r in results], dim=axis), x.grad, rtol=1e-4, atol=5e-5)
    assert results[0].input.is_contiguous(memory_format=torch.channels_last)
    for name in ("weight", "bias", "scale", "shift"):
        if name in kwargs:
            total = sum(getattr(r, name) for r in results)
            torch.testing.assert_close(total, kwargs[name].grad, rtol=1e-4, atol=5e-5, msg=name)
    if "residual" in kwargs:
        got = torch.cat([r.residual for r in results], dim=axis)
        torch.testing.assert_close(got, kwargs["residual"].grad, rtol=1e-5, atol=1e-6)


def test_low_precision_and_float64_inputs():
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    parts = x.split([1, 5], dim=2)
    merged = GroupStats.merge(*(group_stats(p, 4) for p in parts))
    y = torch.cat([groupnorm.group_norm(p, stats=merged) for p in parts], dim=2)  # groups from the stats
    torch.testing.assert_close(y, groupnorm.group_norm_ref(x, 4), rtol=1e-10, atol=1e-10)

    xb = x.to(torch.bfloat16)
    partsb = xb.split([1, 5], dim=2)
    mergedb = GroupStats.merge(*(group_stats(p, 4) for p in partsb))
    yb = torch.cat([groupnorm.group_norm(p, 4, stats=mergedb) for p in partsb], dim=2)
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb, groupnorm.group_norm(xb, 4), rtol=2e-2, atol=2e-2)


X = torch.randn(2, 8, 4, 4)


@pytest.mark.parametrize(
    "stats, error, message",
    [
        (group_stats(X, 2), ValueError, "stats have 2 groups (stats.shape=(2, 2)), got num_groups=4"),
        (group_stats(X[:1], 4), ValueError, "stats must have shape (N, G)=(2, 4) for an input of shape (2, 8, 4, 4), "
         "got stats.shape=(1, 4)"),
        (group_stats(X.double(), 4), TypeError, "stats must be in the accumulation dtype torch.float32 of input "
         "dtype torch.float32, got stats.dtype=torch.float64"),
        (group_stats(X.to("meta"), 4), ValueError, "stats must be on the input's device cpu, got stats.device=meta"),
        ((X.mean(), X.var()), TypeError, "stats must be a groupnorm.GroupStats or None, got stats of type tuple"),
    ],
    ids=["groups", "shape", "dtype", "device", "type"],
)  # fmt: skip
def test_bad_statistics_are_refused_with_the_value(stats, error, message):
    with pytest.raises(error) as info:
        groupnorm.group_norm(X, 4, stats=stats)
    assert message in str(info.value)


def test_bad_statistics_construction_and_merge():
    ones = torch.ones(2, 4)
    with pytest.raises(
        ValueError, match=r"GroupStats.count must have shape \(N, G\), got count.shape=\(8,\)"
    ):
        GroupStats(torch.ones(8), torch.ones(8), torch.ones(8))
    with pytest.raises(
        ValueError, match=r"GroupStats.m2 must have mean's shape \(2, 4\), got m2.shape=\(2, 3\)"
    ):
        GroupStats(ones, ones, torch.ones(2, 3))
    with pytest.raises(TypeError, match="GroupStats.count must have mean's dtype torch.float32"):
        GroupStats(ones.double(), ones, ones)
    with pytest.raises(ValueError, match=r"got others\[0\].shape=\(2, 2\)"):
        group_stats(X, 4).merge(group_stats(X, 2))
    with pytest.raises(TypeError, match=r"got others\[0\] of type Tensor"):
        group_stats(X, 4).merge(ones)
    with pytest.raises(TypeError, match="input must be a floating-point tensor, got input.dtype=torch.int64"):
        group_stats(torch.ones(2, 4, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="num_channels C=8 must be divisible by num_groups G=3"):
        group_stats(X, 3)
    stats = group_stats(X, 4)
    with pytest.raises(ValueError, match=r"grad_output must be a Tensor of the input's shape \(2, 8, 4, 4\)"):
        groupnorm.group_norm_backward_sums(torch.ones(2, 8), X, stats)
    sums = groupnorm.BackwardSums(torch.ones(2, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"sums.sum_dy_gamma must have the statistics' shape \(2, 4\)"):
        groupnorm.group_norm_part_backward(torch.ones_like(X), X, stats, sums)
