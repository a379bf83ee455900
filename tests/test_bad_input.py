"""Every invalid call raises an error that names the parameter and the value it got."""

import pytest
import torch

import groupnorm

X = torch.randn(2, 8, 4, 4)


def _call(**overrides):
    kwargs = {"input": X, "num_groups": 4}
    kwargs.update(overrides)
    return lambda: groupnorm.group_norm(**kwargs)


BAD_CALLS = [
    ("C not divisible by G", _call(num_groups=3), ValueError, r"C=8 must be divisible by num_groups G=3"),
    ("group_size not dividing C", _call(num_groups=None, group_size=3), ValueError, r"group_size=3"),
    (
        "both num_groups and group_size",
        _call(group_size=2),
        ValueError,
        r"exactly one of.*num_groups=4.*group_size=2",
    ),
    (
        "neither num_groups nor group_size",
        _call(num_groups=None),
        ValueError,
        r"num_groups=None and group_size=None",
    ),
    ("num_groups zero", _call(num_groups=0), ValueError, r"num_groups=0"),
    ("num_groups not an int", _call(num_groups=2.0), ValueError, r"num_groups=2.0"),
    ("rank 1 input", _call(input=torch.randn(8)), ValueError, r"input.dim\(\)=1"),
    ("integer input", _call(input=torch.ones(2, 8, dtype=torch.long)), TypeError, r"input.dtype=torch.int64"),
    ("not a tensor", _call(input=[[1.0]]), TypeError, r"input of type list"),
    ("weight wrong shape", _call(weight=torch.ones(4)), ValueError, r"weight.shape=\(4,\)"),
    ("bias wrong shape", _call(bias=torch.ones(8, 1)), ValueError, r"bias.shape=\(8, 1\)"),
    (
        "weight wrong dtype",
        _call(weight=torch.ones(8, dtype=torch.float64)),
        TypeError,
        r"weight.dtype=torch.float64",
    ),
    ("weight wrong device", _call(weight=torch.ones(8, device="meta")), ValueError, r"weight.device=meta"),
    ("residual wrong shape", _call(residual=torch.ones(2, 8, 4)), ValueError, r"residual.shape=\(2, 8, 4\)"),
    ("residual wrong dtype", _call(residual=X.double()), TypeError, r"residual.dtype=torch.float64"),
    ("scale wrong shape", _call(scale=torch.ones(8)), ValueError, r"scale.shape=\(8,\)"),
    ("shift wrong shape", _call(shift=torch.ones(2, 8, 1)), ValueError, r"shift.shape=\(2, 8, 1\)"),
    ("unknown activation", _call(activation="tanh"), ValueError, r"activation='tanh'"),
    ("negative eps", _call(eps=-1e-5), ValueError, r"eps=-1e-05"),
    ("NaN eps", _call(eps=float("nan")), ValueError, r"eps=nan"),
]


@pytest.mark.parametrize("case,call,error,message", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_call_names_parameter_and_value(case, call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_op_checks_its_arguments_too():
    with pytest.raises(ValueError, match=r"C=8 must be divisible by num_groups G=3"):
        torch.ops.groupnorm.forward(X, None, None, 3, 1e-5, "none", None, None, None)
    with pytest.raises(ValueError, match=r"activation='swish'"):
        torch.ops.groupnorm.forward(X, None, None, 4, 1e-5, "swish", None, None, None)
