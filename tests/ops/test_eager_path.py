"""The eager path (groupnorm.ops.eager) gives the op's bits; the route (groupnorm.ops.routing) steps aside whenever
something watches the call."""

from __future__ import annotations

import pytest
import torch

from groupnorm.functional import group_norm
from groupnorm.ops import routing

EPILOGUES = [
    dict(activation="none"),
    dict(activation="silu", residual=True),
    dict(activation="gelu", scale=True, shift=True),
]


def _inputs(layout: str, epilogue: dict, requires_grad: bool):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 5, 6, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    res = (
        torch.randn(x.shape, generator=gen).contiguous(memory_format=torch.channels_last)
        if epilogue.get("residual")
        else None
    )
    sc = torch.randn(3, 8, generator=gen) if epilogue.get("scale") else None
    sh = torch.randn(3, 8, generator=gen) if epilogue.get("shift") else None
    tensors = [t.requires_grad_(requires_grad) if t is not None else None for t in (x, w, b, res, sc, sh)]
    return tensors, epilogue["activation"]


def _op_forward(x, w, b, res, sc, sh, act):
    return torch.ops.groupnorm.forward(x, w, b, 4, 1e-5, act, res, sc, sh)[0]


@pytest.fixture
def kernels_for_every_size(monkeypatch):
    monkeypatch.setenv("GROUPNORM_CPU_SMALL_NUMEL", "0")


@pytest.mark.usefixtures("kernels_for_every_size")
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("epilogue", EPILOGUES, ids=lambda e: e["activation"])
def test_same_bits_as_the_op_forward_and_backward(layout, epilogue):
    tensors, act = _inputs(layout, epilogue, requires_grad=True)
    y_eager = group_norm(
        tensors[0],
        4,
        tensors[1],
        tensors[2],
        activation=act,
        residual=tensors[3],
        scale=tensors[4],
        shift=tensors[5],
    )
    assert "GroupNormFunction" in type(y_eager.grad_fn).__name__  # the eager path served it
    grad = torch.randn_like(y_eager)
    g_eager = torch.autograd.grad(y_eager, [t for t in tensors if t is not None], grad)

    y_op = _op_forward(*tensors, act)
    assert "GroupNormFunction" not in type(y_op.grad_fn).__name__
    g_op = torch.autograd.grad(y_op, [t for t in tensors if t is not None], grad)
    assert torch.equal(y_eager, y_op)
    assert y_eager.stride() == y_op.stride()
    for a, b in zip(g_eager, g_op):
        assert torch.equal(a, b)


@pytest.mark.usefixtures("kernels_for_every_size")
def test_no_autograd_node_without_requires_grad():
    (x, w, b, *_), _ = _inputs("nchw", EPILOGUES[0], requires_grad=False)
    y = group_norm(x, 4, w, b)
    assert y.grad_fn is None
    assert torch.equal(y, _op_forward(x, w, b, None, None, None, "none"))


def test_double_backward_through_the_eager_path():
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w: group_norm(x, 2, w, None, activation="silu"), (x, w))


def test_eligible_only_for_plain_unobserved_calls():
    x = torch.randn(2, 4, 3)
    assert routing.eligible(x, torch.nn.Parameter(torch.ones(4)), None)
    assert not routing.eligible(x.to("meta"))
    with torch.device("cpu"):  # a torch-function mode
        assert not routing.eligible(x)
    with torch.profiler.profile():
        assert not routing.eligible(x)
    seen = []
    torch.vmap(lambda t: seen.append(routing.eligible(t)) or t)(x)
    assert seen == [False]


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_observers_still_see_the_op():
    x = torch.randn(2, 4, 3)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fake = mode.from_tensor(x)
        assert not routing.eligible(fake)
        assert group_norm(fake, 2).shape == x.shape

    traced = torch.jit.trace(lambda t: group_norm(t, 2), (x,), check_trace=False)
    assert "groupnorm::forward" in str(traced.graph)

    from torch.fx.experimental.proxy_tensor import make_fx

    graph = make_fx(lambda t: group_norm(t, 2))(x)
    assert "groupnorm.forward" in graph.code

    # (an epilogue: small plain eager calls are torch's own, see test_small_plain_nchw_calls_are_torchs_own)
    compiled = torch.compile(lambda t: group_norm(t, 2, activation="silu"), backend="eager", fullgraph=True)
    assert torch.equal(compiled(x), group_norm(x, 2, activation="silu"))


def test_small_plain_nchw_calls_are_torchs_own(monkeypatch):
    """A test of the route, not of the kernels: these calls are meant to be served by torch's own group_norm."""
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    w, b = torch.randn(8, requires_grad=True), torch.randn(8, requires_grad=True)
    y = group_norm(x, 4, w, b)
    assert "NativeGroupNorm" in type(y.grad_fn).__name__
    ref = torch.nn.functional.group_norm(x, 4, w, b)
    assert torch.equal(y, ref)
    grad = torch.randn_like(y)
    for a, b_ in zip(torch.autograd.grad(y, (x, w, b), grad), torch.autograd.grad(ref, (x, w, b), grad)):
        assert torch.equal(a, b_)
    # everything else takes the kernels: an epilogue, channels_last in training (small samples, by the measured
    # rule), another dtype, single-element groups, or a threshold of 0
    assert "GroupNormFunction" in type(group_norm(x, 4, w, b, activation="silu").grad_fn).__name__
    x_cl = torch.randn(2, 8, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert "GroupNormFunction" in type(group_norm(x_cl, 4, w, b).grad_fn).__name__  # 16384 elements
    assert "NativeGroupNorm" in type(group_norm(x_cl[:, :, :8], 4, w, b).grad_fn).__name__  # strided: 4096
    assert "GroupNormFunction" in type(group_norm(x.bfloat16(), 4, w, b).grad_fn).__name__
    assert (
        "GroupNormFunction" in type(group_norm(torch.randn(2, 8, 1, requires_grad=True), 8).grad_fn).__name__
    )
    monkeypatch.setenv("GROUPNORM_CPU_SMALL_NUMEL", "0")
    assert "GroupNormFunction" in type(group_norm(x, 4, w, b).grad_fn).__name__


def test_small_call_thresholds_are_sizes_per_layout():
    # plain NCHW calls go to torch at every size by the measured rule (tests/test_plain_routing.py); the size
    # threshold still decides for channels_last in training, where the rule gives these small samples the kernels
    n = routing.DEFAULT_SMALL_CPU_NUMEL_CHANNELS_LAST
    cl = torch.empty(2, 8, n // 16, 1).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert not routing.served_by_torch(cl, None, None, 2, "none", None, None, None)
    assert routing.served_by_torch(cl[:, :, :-1], None, None, 2, "none", None, None, None)
    big = torch.empty(routing.DEFAULT_SMALL_CPU_NUMEL)
    assert routing.served_by_torch(big.view(2, 4, -1), None, None, 2, "none", None, None, None)


@pytest.mark.parametrize("with_residual", [True, False], ids=["relu+residual", "relu"])
def test_small_relu_residual_calls_are_torchs_ops(with_residual):
    """A test of the route, not of the kernels: these calls are meant to be torch's group_norm, add and relu."""
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    r = torch.randn(2, 8, 5, 6, requires_grad=True) if with_residual else None
    w, b = torch.randn(8, requires_grad=True), torch.randn(8, requires_grad=True)
    y = group_norm(x, 4, w, b, activation="relu", residual=r)
    assert "GroupNormFunction" not in type(y.grad_fn).__name__
    pre = torch.nn.functional.group_norm(x, 4, w, b)
    ref = torch.relu(pre + r if with_residual else pre)
    assert torch.equal(y, ref)
    inputs = (x, w, b, r) if with_residual else (x, w, b)
    grad = torch.randn_like(y)
    for a, b_ in zip(torch.autograd.grad(y, inputs, grad), torch.autograd.grad(ref, inputs, grad)):
        assert torch.equal(a, b_)


def test_relu_residual_thresholds_are_their_own():
    n = routing.DEFAULT_SMALL_CPU_NUMEL_RELU_CHANNELS_LAST
    cl = torch.empty(2, 8, n // 16, 1).contiguous(memory_format=torch.channels_last)
    res = torch.empty_like(cl)
    assert not routing.served_by_torch(cl, None, None, 2, "relu", res, None, None)
    small = cl[:, :, :-1]
    assert routing.served_by_torch(small, None, None, 2, "relu", torch.empty_like(small), None, None)
    # a residual of another dtype, scale/shift, or another activation keep the fused kernel
    assert not routing.served_by_torch(
        small, None, None, 2, "relu", torch.empty_like(small).double(), None, None
    )
    assert not routing.served_by_torch(small, None, None, 2, "silu", None, None, None)
    assert not routing.served_by_torch(small, None, None, 2, "relu", None, torch.empty(2, 8), None)
