"""The Triton activations agree with the one activation table: for each row's code, ``activate`` and
``activate_grad`` compute that row's forward and derivative formulas."""

import pytest
import torch
import triton
import triton.language as tl

from groupnorm.activations import TABLE
from groupnorm.ops.triton.epilogue import ACTIVATION_CODES, activate, activate_grad

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the interpreter runs on CPU tensors

pytestmark = pytest.mark.triton


@triton.jit
def _activations_kernel(Z, Y, D, n, ACT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    z = tl.load(Z + offs, mask=mask, other=0.0)
    tl.store(Y + offs, activate(z, ACT), mask=mask)
    if ACT != 0:
        tl.store(D + offs, activate_grad(z, ACT), mask=mask)


@pytest.mark.parametrize("act", TABLE, ids=lambda a: a.name)
def test_epilogue_activation_codes_compute_the_tables_formulas(act):
    assert ACTIVATION_CODES[act.name] == act.code
    z = torch.linspace(-6.0, 6.0, 125, dtype=torch.float32, device=DEVICE)
    y, d = torch.full_like(z, float("nan")), torch.full_like(z, float("nan"))
    _activations_kernel[(1,)](z, y, d, z.numel(), ACT=act.code, BLOCK=128)
    if act.forward is None:
        assert torch.equal(y, z)
        return
    # float32, and tanh written through exp: a few ulp off torch's, far from another activation's values
    torch.testing.assert_close(y, act.forward(z), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d, act.derivative(z), rtol=1e-5, atol=1e-5)
