"""torch.compile traces into the Triton kernels on CUDA: Inductor's generated code launches our kernels itself (no
call of the opaque op), forward and backward, and gives the eager call's results.

Needs a GPU (scripts/gpu_check.sh runs it); without one, tests/ops/test_decomposition.py checks the traced graphs
on fake CUDA tensors.
"""

import pytest
import torch

import groupnorm
import groupnorm.ops.triton as gn_triton
from groupnorm.testing import assert_close_verbose

pytestmark = pytest.mark.triton
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# shape, dtype, layout, with a residual, with the backward; a one-pass plan, a split one, and the split backward
# with a residual (on an H200: 1, 2 and 2 forward launches)
CASES = {
    "one_pass_fp32": ((2, 64, 16, 16), torch.float32, "nchw", False, True),
    "split_bf16_channels_last": ((2, 64, 16, 16), torch.bfloat16, "channels_last", False, False),
    "split_bf16_residual": ((1, 128, 64, 64), torch.bfloat16, "nchw", True, True),
}
TOLERANCE = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2)}


def _kernel_names(prefix: str) -> set[str]:
    from groupnorm.ops.triton import traced

    return {k.__name__ for k in traced.kernels() if k.__name__.startswith(prefix)}


def _inputs(shape, dtype, layout, residual):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(shape, device="cuda", dtype=dtype, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    tensors = [x, torch.randn(c, device="cuda", generator=gen), torch.randn(c, device="cuda", generator=gen)]
    tensors.append(torch.randn(x.shape, device="cuda", dtype=dtype, generator=gen) if residual else None)
    return tensors


def _block(x, weight, bias, residual):
    return groupnorm.group_norm(x, 32, weight, bias, activation="silu", residual=residual)


@cuda_only
@pytest.mark.parametrize("case", list(CASES))
def test_inductor_launches_our_kernels_and_matches_eager(case):
    from torch._inductor.utils import run_and_get_code

    from groupnorm.ops.triton import traced

    shape, dtype, layout, residual, backward = CASES[case]
    assert gn_triton.register() and traced.traceable()
    torch._dynamo.reset()
    x, weight, bias, res = _inputs(shape, dtype, layout, residual)
    leaves = [t for t in (x, weight, bias, res) if t is not None]
    compiled = torch.compile(_block, fullgraph=True, dynamic=False)
    grad = torch.randn_like(x)

    def run(fn):
        inputs = [
            t.detach().requires_grad_(backward) if t is not None else None for t in (x, weight, bias, res)
        ]
        y = fn(*inputs)
        grads = torch.autograd.grad(y, [t for t in inputs if t is not None], grad) if backward else ()
        return y, grads

    (y, grads), codes = run_and_get_code(run, compiled)
    code = "\n".join(codes)
    assert "groupnorm.forward.default(" not in code, "the forward op was kept opaque"
    assert any(name in code for name in _kernel_names("fwd_")), "no forward kernel in Inductor's code"
    if backward:
        assert "groupnorm.backward.default(" not in code, "the backward op was kept opaque"
        assert any(name in code for name in _kernel_names("bwd_")), "no backward kernel in Inductor's code"

    y_eager, grads_eager = run(_block)
    rtol, atol = TOLERANCE[dtype]
    assert y.stride() == y_eager.stride()
    assert_close_verbose(y, y_eager, atol=atol, rtol=rtol, name="y")
    for name, got, want in zip(("dx", "dweight", "dbias", "dresidual"), grads, grads_eager, strict=False):
        assert_close_verbose(got, want, atol=atol * max(1.0, want.abs().max().item()), rtol=rtol, name=name)
    assert len(grads) == (len(leaves) if backward else 0)
