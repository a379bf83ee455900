"""groupnorm.GroupNorm as a drop-in for torch.nn.GroupNorm, its options, and WSConv2d.

Tests that compare the layer's output with torch's take the ``implementation`` fixture (tests/conftest.py): the
small float32 inputs here would otherwise be served by torch's own group_norm.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import groupnorm
from groupnorm.layers import group_norm as group_norm_module
from groupnorm.layers.group_norm import TORCH_GROUPNORM_HAS_BIAS
from groupnorm.reference import group_norm_ref
from groupnorm.testing import TOLERANCES, assert_close_verbose, assert_no_worse_than_torch, make_input

# (num_groups, num_channels, keyword arguments) accepted by the installed torch's nn.GroupNorm.
CONFIGS = [
    (32, 64, {}),
    (4, 8, {"eps": 1e-3}),
    (1, 6, {"affine": False}),  # layer norm, no parameters
    (6, 6, {}),  # instance norm
]
if TORCH_GROUPNORM_HAS_BIAS:
    CONFIGS.append((2, 8, {"bias": False}))


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return module


def test_constructor_mirrors_torch() -> None:
    ours = inspect.signature(groupnorm.GroupNorm.__init__).parameters
    theirs = inspect.signature(nn.GroupNorm.__init__).parameters
    for name, p in theirs.items():
        assert name in ours, f"torch's argument {name!r} is missing"
        assert ours[name].kind == p.kind, name
        if name not in (
            "num_groups",
            "num_channels",
        ):  # ours default to None: GroupNorm(num_channels=64) works
            assert ours[name].default == p.default, name
    assert {"activation", "group_size"} <= set(ours)
    assert ours["activation"].kind is inspect.Parameter.KEYWORD_ONLY
    assert ours["group_size"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("groups, channels, kw", CONFIGS)
def test_parity_with_torch_module(groups: int, channels: int, kw: dict, implementation) -> None:
    ours, theirs = groupnorm.GroupNorm(groups, channels, **kw), nn.GroupNorm(groups, channels, **kw)
    assert isinstance(ours, nn.GroupNorm)
    assert repr(ours) == repr(theirs)
    assert ours.extra_repr() == theirs.extra_repr()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    # state dict round trip, both ways, with non-default values
    _randomize(theirs, seed=1)
    assert not ours.load_state_dict(theirs.state_dict()).missing_keys
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    _randomize(ours, seed=2)
    theirs.load_state_dict(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(theirs.state_dict()[key], value), key
    x = make_input((3, channels, 5, 4), seed=3)
    assert_close_verbose(ours(x), theirs(x), atol=2e-5, rtol=1e-5, name="y")
    implementation.assert_implementation(calls=1)


def test_bias_false_on_a_torch_without_it(monkeypatch: pytest.MonkeyPatch, implementation) -> None:
    # torch < 2.14's nn.GroupNorm has no bias=; this path emulates it (run here by pretending)
    monkeypatch.setattr(group_norm_module, "TORCH_GROUPNORM_HAS_BIAS", False)
    gn = groupnorm.GroupNorm(2, 8, bias=False)
    assert gn.bias is None and gn.weight is not None
    assert list(gn.state_dict()) == ["weight"]
    assert repr(gn).endswith("bias=False)")
    gn.reset_parameters()
    x = make_input((2, 8, 3), seed=13)
    assert_close_verbose(gn(x), F.group_norm(x, 2, gn.weight), atol=2e-5, rtol=1e-5, name="y")
    implementation.assert_implementation(calls=1)
    if not TORCH_GROUPNORM_HAS_BIAS:  # the real thing: torch's repr has no bias= at all
        assert "bias" not in repr(groupnorm.GroupNorm(2, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_forward_backward_match_torch(dtype: torch.dtype, layout: str, implementation) -> None:
    ours = _randomize(groupnorm.GroupNorm(8, 32)).to(dtype)
    theirs = nn.GroupNorm(8, 32).to(dtype)
    theirs.load_state_dict(ours.state_dict())
    x = make_input((2, 32, 6, 5), dtype, layout, seed=4)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    implementation.assert_implementation(calls=1)
    assert y1.dtype == dtype
    if layout == "channels_last":
        assert y1.is_contiguous(memory_format=torch.channels_last)
    ref = group_norm_ref(x, 8, ours.weight.detach(), ours.bias.detach())
    atol, _ = TOLERANCES[dtype]
    assert_no_worse_than_torch(y1, y2, ref, atol=atol, name="y")
    grad = make_input(tuple(x.shape), dtype, seed=5)
    y1.backward(grad)
    y2.backward(grad)
    atol, rtol = (1e-4, 1e-4) if dtype == torch.float32 else (1e-1, 5e-2)
    assert_close_verbose(x1.grad, x2.grad, atol=atol, rtol=rtol, name="dx")
    for name in ("weight", "bias"):
        g1, g2 = getattr(ours, name).grad, getattr(theirs, name).grad
        assert_close_verbose(g1, g2, atol=atol * 10, rtol=rtol, name=f"d{name}")


@pytest.mark.parametrize("activation", ["relu", "silu", "gelu", "gelu_tanh"])
def test_activation_option(activation: str, implementation) -> None:
    gn = _randomize(groupnorm.GroupNorm(4, 16, activation=activation))
    assert repr(gn) == repr(nn.GroupNorm(4, 16))[:-1] + f", activation={activation!r})"
    x = make_input((2, 16, 3, 3), seed=6)
    expected = group_norm_ref(x, 4, gn.weight.detach(), gn.bias.detach(), activation=activation)
    assert_close_verbose(gn(x), expected, atol=2e-5, rtol=1e-5, name="y")
    implementation.assert_implementation(calls=1)


def test_repr_shows_only_options_in_use() -> None:
    assert "activation" not in repr(groupnorm.GroupNorm(4, 16))
    assert "group_size" not in repr(groupnorm.GroupNorm(4, 16))
    gn = groupnorm.GroupNorm(None, 16, group_size=4, activation="silu")
    assert repr(gn).endswith(", group_size=4, activation='silu')")
    assert gn.num_groups == 4


def test_epilogue_arguments_reach_the_op(implementation) -> None:
    gn = _randomize(groupnorm.GroupNorm(None, 16, group_size=8, activation="silu"))
    x = make_input((2, 16, 4, 4), seed=7)
    residual = make_input((2, 16, 4, 4), seed=8)
    scale, shift = make_input((2, 16), seed=9), make_input((2, 16), seed=10)
    y = gn(x, residual=residual, scale=scale, shift=shift)
    implementation.assert_implementation(calls=1)
    expected = group_norm_ref(
        x,
        2,
        gn.weight.detach(),
        gn.bias.detach(),
        activation="silu",
        residual=residual,
        scale=scale,
        shift=shift,
    )
    assert_close_verbose(y, expected, atol=2e-5, rtol=1e-5, name="y")


def test_activation_is_assignable_and_validated(implementation) -> None:
    gn = groupnorm.GroupNorm(2, 4)
    gn.activation = "relu"
    x = make_input((2, 4, 3), seed=11)
    assert bool((gn(x) >= 0).all())
    gn.activation = "none"
    assert gn.activation is None and bool((gn(x) < 0).any())
    implementation.assert_implementation(calls=2)
    with pytest.raises(ValueError, match="activation='tanh'"):
        gn.activation = "tanh"


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((32, 48), {}, "C=48.*G=32"),
        ((None,), {}, "num_channels must be a positive int, got num_channels=None"),
        ((4, 48), {"group_size": 12}, "exactly one of num_groups and group_size"),
        ((None, 48), {"group_size": 5}, "group_size=5"),
        ((0, 48), {}, "num_groups=0"),
        ((4, 0), {}, "num_channels=0"),
        ((4, 48), {"eps": -1e-5}, "eps=-1e-05"),
        ((4, 48), {"activation": "mish"}, "activation='mish'"),
    ],
)
def test_bad_arguments_name_parameter_and_value(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        groupnorm.GroupNorm(*args, **kwargs)


def test_eps_zero_is_allowed() -> None:
    assert groupnorm.GroupNorm(2, 4, eps=0.0).eps == 0.0


def test_from_module_copies_configuration_and_parameters() -> None:
    src = _randomize(nn.GroupNorm(4, 16, eps=1e-3)).double().eval()
    src.bias.requires_grad_(False)
    gn = groupnorm.GroupNorm.from_module(src, activation="relu")
    assert (gn.num_groups, gn.num_channels, gn.eps, gn.activation) == (4, 16, 1e-3, "relu")
    assert gn.weight.dtype == torch.float64 and not gn.training and not gn.bias.requires_grad
    assert torch.equal(gn.weight, src.weight) and gn.weight.data_ptr() != src.weight.data_ptr()
    x = make_input((2, 16, 3, 3), torch.float64, seed=12)
    assert_close_verbose(gn(x), F.relu(src(x)), atol=1e-10, rtol=1e-10, name="y")


# --- Weight Standardization -----------------------------------------------------------------------------------


def test_standardized_filters_have_zero_mean_and_unit_std() -> None:
    conv = groupnorm.WSConv2d(6, 10, 3, ws_eps=0.0).double()
    with torch.no_grad():
        conv.weight.mul_(5).add_(torch.arange(10, dtype=torch.float64).view(10, 1, 1, 1))
    w = conv.standardized_weight().flatten(1)
    assert_close_verbose(w.mean(1), torch.zeros(10), atol=1e-12, rtol=0, name="mean")
    assert_close_verbose(w.std(1, correction=0), torch.ones(10), atol=1e-12, rtol=0, name="std")


def test_ws_eps_shrinks_as_documented() -> None:
    conv = groupnorm.WSConv2d(4, 3, 1, ws_eps=1e-2).double()
    var = conv.weight.flatten(1).var(1, correction=0)
    std = conv.standardized_weight().flatten(1).std(1, correction=0)
    assert_close_verbose(std, (var / (var + 1e-2)).sqrt(), atol=1e-12, rtol=0, name="std")


def test_ws_forward_uses_standardized_weight_and_gradient_flows() -> None:
    torch.manual_seed(0)
    conv = groupnorm.WSConv2d(4, 8, 3, padding=1, bias=True, groups=2).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    y = conv(x)
    expected = F.conv2d(
        x, groupnorm.layers.standardize_weight(conv.weight, 1e-5), conv.bias, padding=1, groups=2
    )
    assert_close_verbose(y, expected, atol=1e-12, rtol=1e-12, name="y")
    y.square().sum().backward()
    grad = conv.weight.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
    # the output ignores a per-filter shift of the raw weight, so the gradient has zero mean per filter
    assert_close_verbose(grad.flatten(1).mean(1), torch.zeros(8), atol=1e-10, rtol=0, name="grad mean")


def test_ws_conv_is_a_conv2d_with_the_same_state_dict() -> None:
    plain = nn.Conv2d(3, 4, 3, stride=2, bias=False)
    ws = groupnorm.WSConv2d(3, 4, 3, stride=2, bias=False)
    assert isinstance(ws, nn.Conv2d)
    ws.load_state_dict(plain.state_dict())
    assert torch.equal(ws.weight, plain.weight)
    assert repr(ws) == "WS" + repr(plain)[:-1] + ", ws_eps=1e-05)"


def test_ws_bad_eps() -> None:
    with pytest.raises(ValueError, match="ws_eps=-1"):
        groupnorm.WSConv2d(3, 4, 3, ws_eps=-1)
