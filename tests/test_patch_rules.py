"""``groupnorm.patch``'s shared rules: nothing to fuse changes nothing, known-block pairs are used only when the
block's source applies them back to back, unknown GroupNorm subclasses are reported."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import groupnorm
from groupnorm.patching.pairs import PairRule, back_to_back


class NormThenAct(nn.Module):
    def forward(self, x):
        x = self.norm(x)
        x = self.act(x)
        return x


class ActUsedTwice(nn.Module):
    def forward(self, x, t):
        x = self.norm(x)
        x = self.act(x)
        return x + self.act(t)


class NormUsedTwice(nn.Module):
    def forward(self, x):
        y = self.norm(x)
        x = self.norm(x)
        x = self.act(x)
        return x + y


class BranchesEndInNorm(nn.Module):
    def forward(self, x, extra=None):
        if extra is None:
            x = self.norm(x)
        else:
            x = self.norm(x, extra)
        x = self.drop(x)
        x = self.act(x)
        return x


class OptionalNorm(nn.Module):
    def forward(self, x):
        if self.norm is not None:
            x = self.norm(x)
            x = self.act(x)
        return x


class ActNotRightAfter(nn.Module):
    def forward(self, x):
        x = self.norm(x)
        x = x * 2
        x = self.act(x)
        return x


RULE = PairRule("norm", "act")


@pytest.mark.parametrize(
    "cls, rule, reason",
    [
        (NormThenAct, RULE, None),
        (OptionalNorm, RULE, None),
        (BranchesEndInNorm, PairRule("norm", "act", between=("drop",)), None),
        (BranchesEndInNorm, RULE, "does not apply act right after norm"),
        (ActUsedTwice, RULE, "uses act elsewhere too"),
        (NormUsedTwice, RULE, "uses norm's output elsewhere too"),
        (ActNotRightAfter, RULE, "does not apply act right after norm"),
    ],
)
def test_back_to_back_reads_the_source(cls, rule, reason):
    found = back_to_back(cls, rule)
    assert found is None if reason is None else reason in found


def test_nothing_to_fuse_changes_nothing():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    patched, report = groupnorm.patch(model, return_report=True)
    assert patched is model and not report.changed and report.fused == report.swapped == report.left == []
    assert str(report) == "patch: nothing to fuse, model unchanged (no GroupNorm found)"
    assert [type(m) for m in model] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_unknown_group_norm_subclass_is_left_with_the_reason():
    class ScaledGroupNorm(nn.GroupNorm):
        def forward(self, x):
            return 2 * super().forward(x)

    model = nn.Sequential(ScaledGroupNorm(2, 8), nn.SiLU())
    patched, report = groupnorm.patch(model, return_report=True)
    assert patched is model and type(model[0]) is ScaledGroupNorm and isinstance(model[1], nn.SiLU)
    assert report.left == [
        ("0", "unknown subclass ScaledGroupNorm with its own forward (what it computes is not known)")
    ]
    assert "nothing to fuse, model unchanged" in str(report)


def test_every_left_norm_has_a_reason_in_a_traced_model():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.GroupNorm(2, 8), nn.GroupNorm(2, 8), nn.GroupNorm(2, 8)

        def forward(self, x):
            h = self.a(x)
            return F.silu(self.b(h)) + h + self.c(x).sigmoid()

    _, report = groupnorm.patch(Block(), return_report=True)
    assert [n for n, *_ in report.fused] == ["b"]
    assert dict(report.left) == {
        "a": "output used by more than an activation in the traced graph",
        "c": "output goes to sigmoid, not a fusable activation",
    }
