"""Bad input that the documented table (docs/errors.md, tests/test_docs_errors.py) cannot express."""

import pytest
import torch

X = torch.randn(2, 8, 4, 4)


def test_op_checks_its_arguments_under_fake_tensors_too():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 8, 4, 4)
        with pytest.raises(ValueError, match=r"C=8 must be divisible by num_groups G=3"):
            torch.ops.groupnorm.forward(x, None, None, 3, 1e-5, "none", None, None, None)


def test_backward_op_rejects_wrong_mask_length():
    _, mean, rstd = torch.ops.groupnorm.forward(X, None, None, 4, 1e-5, "none", None, None, None)
    with pytest.raises(ValueError, match=r"output_mask must have 6 flags, got output_mask=\[True\]"):
        torch.ops.groupnorm.backward(X, X, None, None, mean, rstd, 4, "none", None, None, None, [True])
