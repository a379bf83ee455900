"""The op as torch sees it: opcheck, fake tensors, autocast, device dispatch through the registry."""

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import groupnorm
from groupnorm.ops import registry, torch_impl
from groupnorm.reference import group_norm_ref
from groupnorm.testing import assert_close_verbose


def _op_args(
    dtype=torch.float32, activation="silu", memory_format=torch.contiguous_format, requires_grad=True
):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 3, 4, generator=gen).to(dtype).contiguous(memory_format=memory_format)
    tensors = [x, torch.randn(8, generator=gen).to(dtype), torch.randn(8, generator=gen).to(dtype)]
    extras = [torch.randn(2, 8, 3, 4, generator=gen).to(dtype), torch.randn(2, 8, generator=gen).to(dtype)]
    extras.append(torch.randn(2, 8, generator=gen).to(dtype))
    tensors = [t.requires_grad_(requires_grad) for t in tensors]
    extras = [t.requires_grad_(requires_grad) for t in extras]
    return (*tensors, 4, 1e-5, activation, *extras)


@pytest.mark.parametrize(
    "memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"]
)
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_opcheck_forward(activation, memory_format):
    torch.library.opcheck(
        torch.ops.groupnorm.forward.default, _op_args(activation=activation, memory_format=memory_format)
    )


def test_opcheck_forward_without_optionals():
    x = torch.randn(3, 6, 5, requires_grad=True)
    torch.library.opcheck(
        torch.ops.groupnorm.forward.default, (x, None, None, 3, 1e-5, "none", None, None, None)
    )


def test_opcheck_backward():
    args = _op_args(requires_grad=False)
    y, mean, rstd = torch.ops.groupnorm.forward(*args)
    x, w, b, g, _eps, act, r, s, t = args
    torch.library.opcheck(
        torch.ops.groupnorm.backward.default,
        (torch.randn_like(y), x, w, b, mean, rstd, g, act, r, s, t, [True] * 6),
    )


def test_fake_tensors_give_shapes_dtypes_and_strides():
    with FakeTensorMode():
        x = torch.empty(2, 8, 5, 5, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        y, mean, rstd = torch.ops.groupnorm.forward(x, None, None, 4, 1e-5, "none", None, None, None)
        assert y.stride() == x.stride() and y.dtype == torch.bfloat16
        assert mean.shape == (2, 4) and mean.dtype == torch.float32 and rstd.dtype == torch.float32


def test_meta_device_runs_the_plain_torch_path():
    x = torch.empty(2, 8, 5, 5, device="meta")
    y = groupnorm.group_norm(x, 4, activation="relu")
    assert y.device.type == "meta" and y.shape == x.shape


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_autocast_behaves_like_torch_group_norm(device, input_dtype, implementation):
    # CUDA autocast runs torch's group_norm in float32; CPU autocast leaves it alone. The op does the same.
    x = torch.randn(2, 8, 4, 4, device=device).to(input_dtype)
    weight, bias = torch.randn(8, device=device), torch.randn(8, device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        ours = groupnorm.group_norm(x, 4, weight, bias)
        theirs = F.group_norm(x, 4, weight, bias)
    if device == "cpu":  # (under CUDA autocast the call goes through the op, which casts, then routes)
        implementation.assert_implementation(calls=1)
    assert ours.dtype == theirs.dtype
    assert_close_verbose(ours.float(), theirs.float(), atol=2e-2, rtol=1e-2, name="autocast")


def test_mean_and_rstd_are_not_differentiable():
    x = torch.randn(2, 8, 4, requires_grad=True)
    _, mean, rstd = torch.ops.groupnorm.forward(x, None, None, 2, 1e-5, "none", None, None, None)
    assert not mean.requires_grad and not rstd.requires_grad


def test_registry_dispatches_to_registered_kernel_and_back(implementation):
    calls = []

    def counting_forward(*args):
        calls.append("forward")
        return torch_impl.forward(*args)

    def counting_backward(*args):
        calls.append("backward")
        return torch_impl.backward(*args)

    impl = registry.Implementation(
        name="test-counting",
        device_type="cpu",
        forward=counting_forward,
        backward=counting_backward,
        supports=lambda x: x.dtype == torch.float64,
    )
    x = torch.randn(2, 8, 3, dtype=torch.float64, requires_grad=True)
    served_float32_by = registry.select(x.float()).name
    served_float64_by = registry.select(x).name
    registry.register_implementation(impl)
    try:
        groupnorm.group_norm(x, 2).sum().backward()
        implementation.assert_implementation("test-counting", calls=1)
        groupnorm.group_norm(x.detach().float(), 2)  # float32: not supported by it, served as before
        implementation.assert_implementation(served_float32_by, calls=1)
        assert calls == ["forward", "backward"]
        assert registry.select(x).name == "test-counting"
        assert registry.select(x.float()).name == served_float32_by
    finally:
        registry.unregister_implementation("test-counting", "cpu")
    assert registry.select(x).name == served_float64_by


def test_op_result_matches_reference_through_torch_ops_namespace():
    args = _op_args(requires_grad=False)
    y, _, _ = torch.ops.groupnorm.forward(*args)
    x, w, b, g, eps, act, r, s, t = args
    expected = group_norm_ref(x, g, w, b, eps, activation=act, residual=r, scale=s, shift=t)
    assert_close_verbose(y, expected, atol=3e-5, rtol=1e-5, name="op")
