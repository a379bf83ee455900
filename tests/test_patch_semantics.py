"""What ``groupnorm.patch`` returns and what it leaves in the caller's model: after a patch, the returned model
and the caller's own object both compute what the model computed before (outputs and gradients), on every path
(graph rewrite, Sequential, known diffusers and timm blocks), and patching twice changes nothing."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import groupnorm
from groupnorm.testing import randomize_norm_affine

TOL = dict(atol=1e-5, rtol=1e-5)
GRAD_TOL = dict(atol=1e-4, rtol=1e-4)


class Gelu(nn.Module):
    """A GELU that torch.fx traces into a function call, so only the graph rewrite can fuse it."""

    def forward(self, x):
        return F.gelu(x)


def _conv_gn_model():
    # conv -> GN -> SiLU (a Sequential pair) -> conv -> GN -> F.gelu (a pair only the graph shows)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        nn.SiLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        Gelu(),
    )


class SharedNorm(nn.Module):
    """One GroupNorm module called twice, and one SiLU module used after every norm and after the residual add."""

    def __init__(self):
        super().__init__()
        self.norm = nn.GroupNorm(4, 16)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.norm_out = nn.GroupNorm(4, 16)
        self.act = nn.SiLU()

    def forward(self, x):
        h = self.conv(self.act(self.norm(x)))
        h = self.act(self.norm(h))
        return self.act(self.act(self.norm_out(h)) + x)


class ModeBranch(nn.Module):
    """A forward that takes another branch in training mode: a graph traced in one mode would keep its branch."""

    def __init__(self):
        super().__init__()
        self.norm = nn.GroupNorm(4, 16)

    def forward(self, x):
        h = F.silu(self.norm(x))
        if self.training:
            h = h * 0.5
        return h


def _output(model, *inputs):
    out = model(*inputs)
    return out.sample if hasattr(out, "sample") else out


def _assert_computes_like(model, stock, *inputs):
    """``model`` gives ``stock``'s output, input gradient and parameter gradients (by parameter name)."""
    for m in (model, stock):
        m.zero_grad(set_to_none=True)
    x, xs = inputs[0].clone().requires_grad_(), inputs[0].clone().requires_grad_()
    out, expected = _output(model, x, *inputs[1:]), _output(stock, xs, *inputs[1:])
    torch.testing.assert_close(out, expected, **TOL)
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(x.grad, xs.grad, **GRAD_TOL)
    stock_params = dict(stock.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(
            p.grad, stock_params[name].grad, **GRAD_TOL, msg=lambda m, n=name: f"{n}: {m}"
        )


def _patch_and_check(model, *inputs):
    """Patch ``model``; check the returned model and the caller's object against a copy taken before."""
    stock = copy.deepcopy(model)
    patched, report = groupnorm.patch(model, return_report=True)
    _assert_computes_like(patched, stock, *inputs)
    _assert_computes_like(model, stock, *inputs)
    return patched, report


def _structure(model):
    return [
        (p, type(m).__name__, getattr(m, "activation", None), m.training) for p, m in model.named_modules()
    ]


def test_graph_fusion_leaves_the_callers_model_computing_the_same():
    net = randomize_norm_affine(_conv_gn_model()).eval()
    patched, report = _patch_and_check(net, torch.randn(2, 3, 8, 8))
    assert report.fused == [("1", "2", "silu", "Sequential"), ("4", "gelu", "gelu", "fx")]
    assert isinstance(patched, torch.fx.GraphModule) and patched is not net
    # The Sequential pair is fused in the caller's model; the graph's pair only in the graph module's own norm.
    assert net[1].activation == "silu" and isinstance(net[2], nn.Identity)
    assert net[4].activation is None and patched.get_submodule("4").activation == "gelu"
    assert patched.get_submodule("4").weight is net[4].weight  # the same parameter tensors
    assert dict(patched.named_parameters()).keys() == dict(net.named_parameters()).keys()


def test_shared_norm_and_shared_activation():
    model = randomize_norm_affine(SharedNorm()).eval()
    patched, report = _patch_and_check(model, torch.randn(2, 16, 6, 6))
    assert [(norm, act) for norm, act, *_ in report.fused] == [("norm_out", "act")]
    assert dict(report.left) == {"norm": "called 2 times in the traced graph"}
    assert model.norm.activation is None and model.norm_out.activation is None


def test_model_in_training_mode_keeps_every_training_flag():
    net = randomize_norm_affine(_conv_gn_model()).train()
    net[3].eval()  # a submodule frozen in eval mode inside a training model
    flags = [m.training for m in net.modules()]
    patched, report = _patch_and_check(net, torch.randn(2, 3, 8, 8))
    assert len(report.fused) == 2 and patched.training
    assert [m.training for m in net.modules()] == flags
    assert not patched.get_submodule("3").training


def test_forward_branching_on_the_training_flag_gets_no_graph():
    model = randomize_norm_affine(ModeBranch()).eval()
    stock = copy.deepcopy(model)
    x = torch.randn(2, 16, 4, 4)
    patched, report = _patch_and_check(model, x)
    assert patched is model and not report.traced and "training flags" in report.trace_error
    assert [path for path, _ in report.left] == ["norm"] and "training flags" in str(report)
    for train in (True, False):
        stock.train(train), model.train(train)
        _assert_computes_like(model, stock, x)


def test_patching_twice_changes_nothing_the_second_time():
    net = randomize_norm_affine(_conv_gn_model()).eval()
    x = torch.randn(2, 3, 8, 8)
    stock = copy.deepcopy(net)
    patched = groupnorm.patch(net)
    structure, state = _structure(patched), copy.deepcopy(patched.state_dict())
    again, report = groupnorm.patch(patched, return_report=True)
    assert again is patched and not report.changed and report.fused == report.swapped == report.left == []
    assert str(report) == "patch: nothing to fuse, model unchanged (2 GroupNorm(s) fused already)"
    assert report.already == ["1", "4"]
    assert _structure(again) == structure
    assert all(torch.equal(v, state[k]) for k, v in again.state_dict().items())
    _assert_computes_like(again, stock, x)
    # The caller's first object, patched again: its graph pair is fused again in a new graph module, and it stays.
    other, report = groupnorm.patch(net, return_report=True)
    assert [how for *_, how in report.fused] == ["fx"] and report.already == ["1"]
    _assert_computes_like(other, stock, x)
    _assert_computes_like(net, stock, x)


def test_diffusers_unet_is_patched_in_place_and_computes_the_same():
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DModel(
        sample_size=8,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        layers_per_block=1,
        resnet_time_scale_shift="scale_shift",
    )
    unet = randomize_norm_affine(unet).eval()
    patched, report = _patch_and_check(unet, torch.randn(2, 3, 8, 8), torch.tensor([3, 700]))
    assert patched is unet and len(report.fused) > 4


def test_timm_resnet_is_patched_in_place_and_computes_the_same():
    timm = pytest.importorskip("timm")
    # SiLU blocks with DropBlock between bn1 and act1: no known-block rule, and a graph traced in eval mode would
    # drop DropBlock for good.
    model = timm.create_model(
        "resnet18",
        pretrained=False,
        norm_layer="groupnorm",
        act_layer="silu",
        drop_block_rate=0.2,
        num_classes=5,
    )
    model = randomize_norm_affine(model).eval()
    patched, report = _patch_and_check(model, torch.randn(2, 3, 32, 32))
    assert patched is model and type(patched).__name__ == "ResNet"
    # the stem's and layer1/2's bn1 -> act1 (DropBlock is in layer3/4 only), and every block's bn2 -> + -> act2
    assert len(report.fused) == 5 + 8 and "training flags flipped" in report.trace_error
