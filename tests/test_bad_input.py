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


@pytest.mark.parametrize("layer", ["GroupNorm", "DistributedGroupNorm"])
def test_layer_applied_to_another_channel_count_names_both_counts(layer):
    import groupnorm

    module = getattr(groupnorm, layer)(32, 64)
    with pytest.raises(ValueError) as info:
        module(torch.randn(2, 96, 4, 4))  # (checked before DistributedGroupNorm looks for its process group)
    message = str(info.value)
    assert f"{layer}(32, 64) has num_channels=64, but the input has 96 channels: input.shape[1]=96" in message
    assert "weight" not in message  # not the weight the caller never passed


def test_layer_without_parameters_takes_any_channel_count_like_torch():
    import groupnorm

    x = torch.randn(2, 96, 4, 4)
    ours = groupnorm.GroupNorm(32, 64, affine=False)(x)
    torch.testing.assert_close(ours, torch.nn.GroupNorm(32, 64, affine=False)(x), atol=2e-5, rtol=1e-5)
