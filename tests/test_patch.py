"""``groupnorm.patch``: swap torch GroupNorms for ours bit for bit, fuse GN -> activation, same outputs."""

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import groupnorm
from groupnorm.testing import assert_close_verbose


class DiffusionResnetBlock(nn.Module):
    """The shape of a diffusion UNet/VAE ResNet block: GN -> SiLU -> conv, twice, one shared activation module."""

    def __init__(self, channels=32, groups=8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.nonlinearity = nn.SiLU()

    def forward(self, x):
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = self.conv2(F.gelu(self.norm2(h), approximate="tanh"))
        return x + h


class DataDependentBlock(nn.Module):
    """Control flow on values: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(4, 16), nn.ReLU(), nn.Conv2d(16, 16, 1))

    def forward(self, x):
        return self.body(x) if x.sum() > 0 else -self.body(x)


def _randomize(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_diffusion_block_is_fused_by_the_graph_rewrite():
    model = _randomize(DiffusionResnetBlock())
    x = torch.randn(2, 32, 8, 8)
    expected = model(x)
    before = _state(model)
    patched, report = groupnorm.patch(model, return_report=True)
    assert sorted(report.swapped) == ["norm1", "norm2"]
    assert {(norm, name) for norm, _, name, _ in report.fused} == {("norm1", "silu"), ("norm2", "gelu_tanh")}
    assert report.traced and isinstance(patched, torch.fx.GraphModule)
    assert isinstance(patched.norm1, groupnorm.GroupNorm) and patched.norm1.activation == "silu"
    for key, value in patched.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert_close_verbose(patched(x), expected, atol=1e-5, rtol=1e-5, name="patched block")


def test_sequential_pattern_is_fused_without_tracing():
    model = _randomize(DataDependentBlock())
    x = torch.randn(2, 16, 5, 5)
    expected = model(x)
    patched, report = groupnorm.patch(model, return_report=True)
    assert patched is model and not report.traced and report.trace_error
    assert report.fused == [("body.0", "body.1", "relu", "Sequential")]
    assert isinstance(model.body[1], nn.Identity) and model.body[0].activation == "relu"
    assert_close_verbose(patched(x), expected, atol=1e-5, rtol=1e-5, name="untraceable model")
    assert "could not trace" in str(report)


def test_norm_whose_output_is_reused_is_not_fused():
    class TwoUsers(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.GroupNorm(2, 8)

        def forward(self, x):
            h = self.norm(x)
            return F.silu(h) + h

    model = _randomize(TwoUsers())
    x = torch.randn(2, 8, 3)
    expected = model(x)
    patched, report = groupnorm.patch(model, return_report=True)
    assert report.fused == [] and report.swapped == ["norm"]
    assert_close_verbose(patched(x), expected, atol=1e-5, rtol=1e-5)


def test_converted_resnet_is_patched_and_trains():
    model = groupnorm.convert_norms(groupnorm.models.resnet18(norm="bn", num_classes=10), "gn")
    _randomize(model)
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    patched, report = groupnorm.patch(model, return_report=True)
    assert len(report.fused) >= 8  # the norm -> relu at the stem and inside every block
    assert_close_verbose(patched(x), expected, atol=1e-4, rtol=1e-4, name="patched resnet18")
    patched(x).sum().backward()
    assert all(p.grad is not None for p in patched.parameters())


def test_fuse_false_only_swaps():
    model = DiffusionResnetBlock()
    patched, report = groupnorm.patch(model, fuse=False, return_report=True)
    assert patched is model and report.fused == [] and len(report.swapped) == 2


def test_patch_rejects_non_modules():
    with pytest.raises(TypeError, match="model of type int"):
        groupnorm.patch(3)


def _gn_silu():
    torch.manual_seed(0)
    return _randomize(nn.Sequential(nn.Conv2d(3, 16, 3), nn.GroupNorm(4, 16), nn.SiLU()))


def test_patch_returns_the_model_ready_to_call(caplog):
    stock, x = _gn_silu(), torch.randn(2, 3, 8, 8)
    expected = stock(x)
    in_place = copy.deepcopy(stock)
    with caplog.at_level(logging.INFO, logger="groupnorm"):
        model = groupnorm.patch(in_place)
    # the model itself (patched in place), not a tuple: callable at once
    assert model is in_place and isinstance(model, nn.Module)
    assert isinstance(model[1], groupnorm.GroupNorm) and model[1].activation == "silu"
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    # return_report=True: the same patched model, with the report that was logged
    other, report = groupnorm.patch(copy.deepcopy(stock), return_report=True)
    assert isinstance(report, groupnorm.PatchReport) and report.swapped == ["1"] and len(report.fused) == 1
    assert type(other) is type(model) and repr(other) == repr(model)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(other(x), model(x), atol=0, rtol=0)
    records = [r for r in caplog.records if r.name == "groupnorm"]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert records[0].getMessage() == str(report)
    assert logging.getLogger("groupnorm").handlers == []  # the library configures no logging


def test_patch_returns_the_graph_module_when_the_graph_rewrite_fuses(caplog):
    stock, x = _randomize(DiffusionResnetBlock()), torch.randn(2, 32, 8, 8)
    with caplog.at_level(logging.INFO, logger="groupnorm"):
        model = groupnorm.patch(copy.deepcopy(stock))
    assert isinstance(model, torch.fx.GraphModule)
    assert_close_verbose(model(x), stock(x), atol=1e-4, rtol=1e-4, name="patched diffusion block")
    (record,) = [r for r in caplog.records if r.name == "groupnorm"]
    assert record.levelno == logging.INFO and "2 activation(s) fused" in record.getMessage()


@pytest.mark.parametrize("value", ["yes", 1, None, 0.0])
def test_patch_return_report_must_be_a_bool(value):
    model = nn.Sequential(nn.GroupNorm(4, 16), nn.SiLU())
    message = rf"return_report must be a bool \(True or False\), got return_report={value!r} of type"
    with pytest.raises(TypeError, match=message):
        groupnorm.patch(model, return_report=value)
    assert type(model[0]) is nn.GroupNorm  # refused before anything changed
