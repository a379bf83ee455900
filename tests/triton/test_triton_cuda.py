"""The kernels behind the registered op on a GPU: registration, torch.compile, CUDA graphs, 2**24 and 2**31 elements.

Only the registration test runs without CUDA; the rest need a GPU.
"""

import pytest
import torch
import torch.nn.functional as F

import groupnorm
import groupnorm.ops.triton as gn_triton
from groupnorm.ops import registry
from groupnorm.reference import group_norm_ref
from groupnorm.testing import assert_close_verbose

pytestmark = pytest.mark.triton
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_registered_for_cuda_exactly_when_usable():
    registered = gn_triton.register()
    assert registered == gn_triton.available()
    names = [impl.name for impl in registry.implementations("cuda")]
    assert (gn_triton.IMPLEMENTATION_NAME in names) == registered
    # CPU tensors never reach the Triton kernels through the op.
    assert registry.select(torch.randn(2, 4, 3)).name != gn_triton.IMPLEMENTATION_NAME


def _cuda_inputs(shape, dtype, layout="channels_last", seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(shape, device="cuda", dtype=dtype, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    c = shape[1]
    weight = torch.randn(c, device="cuda", generator=gen).requires_grad_()
    bias = torch.randn(c, device="cuda", generator=gen).requires_grad_()
    return x.requires_grad_(), weight, bias


@cuda_only
def test_op_on_cuda_is_served_by_triton_and_matches_reference():
    gn_triton.register()
    x, weight, bias = _cuda_inputs((2, 64, 16, 16), torch.bfloat16)
    assert registry.select(x).name == gn_triton.IMPLEMENTATION_NAME
    y = groupnorm.group_norm(x, 32, weight, bias, activation="silu")
    assert y.is_contiguous(memory_format=torch.channels_last)
    expected = group_norm_ref(x.detach(), 32, weight.detach(), bias.detach(), activation="silu")
    assert_close_verbose(y, expected, atol=3e-2, rtol=2e-2, name="y")
    grad = torch.randn_like(y)
    y.backward(grad)
    leaves = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    ref = group_norm_ref(leaves[0], 32, leaves[1], leaves[2], activation="silu")
    ref_grads = torch.autograd.grad(ref, leaves, grad.double())
    for name, got, want in zip(
        ("dx", "dweight", "dbias"), (x.grad, weight.grad, bias.grad), ref_grads, strict=True
    ):
        assert_close_verbose(got, want, atol=3e-2 * max(1.0, want.abs().max().item()), rtol=2e-2, name=name)


@cuda_only
def test_torch_compile_fullgraph_forward_and_backward():
    gn_triton.register()
    x, weight, bias = _cuda_inputs((4, 32, 8, 8), torch.float32)

    def block(t, w, b):
        return groupnorm.group_norm(t * 2.0, 8, w, b, activation="gelu").sum()

    compiled = torch.compile(block, fullgraph=True)  # raises on any graph break
    eager_grads = torch.autograd.grad(block(x, weight, bias), (x, weight, bias))
    compiled_grads = torch.autograd.grad(compiled(x, weight, bias), (x, weight, bias))
    for a, b in zip(eager_grads, compiled_grads, strict=True):
        assert_close_verbose(b, a, atol=1e-5, rtol=1e-5, name="compiled gradient")


@cuda_only
def test_cuda_graph_capture_and_replay():
    from groupnorm.ops.triton import launch

    x = torch.randn(1, 64, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    weight = torch.randn(64, device="cuda")
    # Warm up (compiles) outside the capture, as CUDA graphs require.
    launch.forward(x, weight, None, 32, 1e-5, "silu", None, None, None)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y, mean, rstd = launch.forward(x, weight, None, 32, 1e-5, "silu", None, None, None)
    x.copy_(torch.randn_like(x) * 3 + 1)
    graph.replay()
    torch.cuda.synchronize()
    assert_close_verbose(y, group_norm_ref(x, 32, weight, activation="silu"), atol=3e-5, rtol=1e-5, name="y")


@cuda_only
@pytest.mark.slow
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_2_pow_24_elements_bf16(layout):
    # A batch-1 VAE layer: 1 x 512 x 128 x 256 = 2**24 elements, groups of 2**19 (split path, L2 waves).
    x, weight, bias = _cuda_inputs((1, 512, 128, 256), torch.bfloat16, layout)
    y = groupnorm.group_norm(x, 32, weight, bias, activation="silu")
    expected = F.silu(F.group_norm(x.detach().float(), 32, weight.detach(), bias.detach()))
    assert_close_verbose(y, expected, atol=4e-2, rtol=2e-2, name="y")
    y.backward(torch.ones_like(y))
    x32 = x.detach().float().requires_grad_()
    F.silu(F.group_norm(x32, 32, weight.detach(), bias.detach())).backward(torch.ones_like(x32))
    assert_close_verbose(x.grad, x32.grad, atol=4e-2, rtol=3e-2, name="dx")


@cuda_only
@pytest.mark.slow
def test_2_pow_31_elements_64_bit_offsets():
    # 2 x 64 x 2**24 bf16 = 2**31 elements (4 GiB): offsets past 2**31 - 1 need 64-bit arithmetic.
    free, _total = torch.cuda.mem_get_info()
    if free < 24 * 2**30:
        pytest.skip(f"needs 24 GiB of free GPU memory, has {free / 2**30:.1f}")
    from groupnorm.ops.triton import launch

    n, c, s, groups = 2, 64, 2**24, 32
    x = torch.randn(n, c, s, device="cuda", dtype=torch.bfloat16)
    y, mean, rstd = launch.forward(x, None, None, groups, 1e-5, "none", None, None, None)
    # The last group (sample 1, channels 62..63) lies wholly beyond 2**31 - 1 elements from the start.
    tail = x[1:, 62:].double()
    assert_close_verbose(
        mean[1, -1:], tail.mean().reshape(1), atol=1e-5, rtol=1e-5, name="mean of last group"
    )
    expected_tail = (tail - tail.mean()) / torch.sqrt(tail.var(unbiased=False) + 1e-5)
    assert_close_verbose(y[1:, 62:], expected_tail, atol=3e-2, rtol=2e-2, name="y of last group")

    grad_y = torch.randn_like(x)
    dx = launch.backward(
        grad_y, x, None, None, mean, rstd, groups, "none", None, None, None, [True] + [False] * 5
    )[0]
    del x, y
    leaf = tail.requires_grad_()
    ref = group_norm_ref(leaf, 1)
    (ref_dx,) = torch.autograd.grad(ref, leaf, grad_y[1:, 62:].double())
    assert_close_verbose(dx[1:, 62:], ref_dx, atol=3e-2, rtol=2e-2, name="dx of last group")
