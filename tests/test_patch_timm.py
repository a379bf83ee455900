"""``groupnorm.patch`` on timm models: timm's GroupNorm classes move onto the fused op, GroupNormAct keeps its
activation inside the call, ResNet ``bn1 -> act1`` pairs fuse without torch.fx, outputs and gradients unchanged."""

import copy

import pytest
import torch
from torch import nn

import groupnorm
from groupnorm.testing import assert_close_verbose, randomize_norm_affine

timm = pytest.importorskip("timm")
from timm.layers import GroupNorm, GroupNorm1, GroupNorm1Act, GroupNormAct  # noqa: E402

TOL = dict(atol=1e-5, rtol=1e-5)


def _compare(stock, patched, x):
    xs, xp = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_stock, out_patched = stock(xs), patched(xp)
    assert_close_verbose(out_patched, out_stock, **TOL, name="output")
    out_stock.square().sum().backward()
    out_patched.square().sum().backward()
    assert_close_verbose(xp.grad, xs.grad, atol=1e-4, rtol=1e-4, name="input grad")
    stock_params = dict(stock.named_parameters())
    for name, p in patched.named_parameters():
        assert_close_verbose(p.grad, stock_params[name].grad, atol=1e-4, rtol=1e-4, name=f"grad {name}")


def _same_state(stock, patched):
    before, after = stock.state_dict(), patched.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_resnet_with_timm_group_norm_is_swapped_and_fused_without_fx():
    stock = randomize_norm_affine(
        timm.create_model("resnet18", pretrained=False, norm_layer="groupnorm", num_classes=5)
    )
    patched, report = groupnorm.patch(copy.deepcopy(stock), return_report=True)
    assert type(patched) is type(stock)  # the stem and block pairs need no traced graph
    norms = [p for p, m in stock.named_modules() if isinstance(m, GroupNorm)]
    assert norms and sorted(report.swapped) == sorted(norms)
    blocks = [p for p, m in stock.named_modules() if type(m).__name__ == "BasicBlock"]
    # stem bn1 -> act1, each block's bn1 -> act1 and its bn2 -> + shortcut -> act2
    expected = {"bn1"} | {f"{b}.{n}" for b in blocks for n in ("bn1", "bn2")}
    assert {norm for norm, *_ in report.fused} == expected
    assert all(patched.get_submodule(p).activation == "relu" for p in expected)
    assert {p for p, _ in report.left} == set(norms) - expected  # the downsample shortcuts' norms
    _same_state(stock, patched)
    _compare(stock, patched, torch.randn(2, 3, 32, 32))


def test_norm_act_modules_become_one_fused_call():
    stock = randomize_norm_affine(
        nn.Sequential(
            GroupNormAct(16, 4, act_layer=nn.SiLU),
            GroupNormAct(16, 8, act_layer="gelu"),  # timm's own GELU module
            GroupNorm1Act(16, act_layer=nn.ReLU),
            GroupNormAct(16, 4, apply_act=False),
            GroupNorm1(16),
            GroupNormAct(16, 4, act_layer=nn.Mish),  # no fused form: left as it is
            GroupNormAct(16, 4, act_layer=nn.ReLU, drop_layer=lambda: nn.Dropout(0.5)),  # drop before act
        )
    )
    patched, report = groupnorm.patch(copy.deepcopy(stock), return_report=True)
    assert [(n, a) for n, _, a, _ in report.fused] == [("0", "silu"), ("1", "gelu"), ("2", "relu")]
    assert [patched[i].activation for i in range(5)] == ["silu", "gelu", "relu", None, None]
    assert all(type(patched[i]) is groupnorm.GroupNorm for i in range(5))
    assert type(patched[5]) is GroupNormAct and type(patched[6]) is GroupNormAct
    left = dict(report.left)
    assert "Mish has no fused form" in left["5"] and "drop=Dropout" in left["6"]
    _same_state(stock, patched)
    _compare(stock.eval(), patched.eval(), torch.randn(2, 16, 5, 5))
