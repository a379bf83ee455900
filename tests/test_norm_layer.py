"""norm_layer kinds, the norm registry, and the grouping policy (strict, gcd fallback, "auto")."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from torch import nn

import groupnorm
from groupnorm.layers import norm_registry
from groupnorm.layers.grouping import auto_num_groups, resolve_groups


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(norm_registry, "_NORMS", dict(norm_registry._NORMS))


@pytest.mark.parametrize(
    "kind, kwargs, cls, groups",
    [
        ("bn", {}, nn.BatchNorm2d, None),
        ("bn", {"dim": 1}, nn.BatchNorm1d, None),
        ("bn", {"dim": 3}, nn.BatchNorm3d, None),
        ("bn", {"dim": None}, groupnorm.layers.BatchNormNd, None),
        ("syncbn", {}, nn.SyncBatchNorm, None),
        ("gn", {}, groupnorm.GroupNorm, 32),
        ("gn", {"num_groups": 8}, groupnorm.GroupNorm, 8),
        ("gn", {"group_size": 16}, groupnorm.GroupNorm, 4),
        ("gn", {"num_groups": "auto"}, groupnorm.GroupNorm, 32),
        ("ln", {}, groupnorm.GroupNorm, 1),
        ("in", {}, groupnorm.GroupNorm, 64),
        ("none", {}, nn.Identity, None),
    ],
)
def test_kinds_build_the_right_module(kind: str, kwargs: dict, cls: type, groups: int | None) -> None:
    m = groupnorm.norm_layer(kind, **kwargs)(64)
    assert type(m) is cls
    if groups is not None:
        assert m.num_groups == groups and m.num_channels == 64
    if kind == "in":
        assert m.affine and m.weight.shape == (64,)
    if hasattr(m, "num_features"):
        assert m.num_features == 64


def test_options_reach_the_module() -> None:
    m = groupnorm.norm_layer("gn", num_groups=4, eps=1e-3, activation="silu", dtype=torch.float64)(16)
    assert (m.eps, m.activation, m.weight.dtype) == (1e-3, "silu", torch.float64)
    bn = groupnorm.norm_layer("bn", momentum=0.01, track_running_stats=False)(8)
    assert bn.momentum == 0.01 and bn.running_mean is None


def test_norm_layers_run_forward() -> None:
    x = torch.randn(2, 32, 4, 4)
    for kind in ("bn", "gn", "ln", "in", "none"):
        assert groupnorm.norm_layer(kind)(32)(x).shape == x.shape
    nd = groupnorm.norm_layer("bn", dim=None)(32)
    assert nd(torch.randn(2, 32, 3, 4, 4)).shape == (2, 32, 3, 4, 4)  # any rank, as SyncBatchNorm
    with pytest.raises(ValueError, match="input.dim"):
        nd(torch.randn(32))


def test_works_as_torchvision_norm_layer() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(norm_layer=groupnorm.norm_layer("gn", num_groups=32))
    assert sum(isinstance(m, groupnorm.GroupNorm) for m in model.modules()) == 20
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_unknown_kind_lists_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown norm kind 'batchnorm'; known kinds: bn, syncbn, gn, ln, in, none"
    ):
        groupnorm.norm_layer("batchnorm")


@pytest.mark.parametrize(
    "kind, kwargs, error, match",
    [
        ("gn", {"epsilon": 1e-5}, TypeError, "'gn' does not take \\['epsilon'\\]"),
        ("bn", {"num_groups": 4}, TypeError, "'bn' takes no grouping options, got num_groups=4"),
        ("ln", {"group_size": 4}, TypeError, "'ln' takes no grouping options"),
        ("gn", {"fallback": "round"}, ValueError, "fallback='round'"),
        ("gn", {"num_groups": 4, "group_size": 4}, ValueError, "num_groups=4 and group_size=4"),
        ("bn", {"dim": 4}, ValueError, "dim=4"),
    ],
)
def test_bad_options_fail_early(kind: str, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        groupnorm.norm_layer(kind, **kwargs)(16)


def test_register_norm(scratch_registry: None) -> None:
    groupnorm.register_norm("gn16", lambda c, **kw: groupnorm.GroupNorm(None, c, group_size=16, **kw))
    assert "gn16" in groupnorm.known_norms()
    m = groupnorm.norm_layer("gn16", eps=1e-4)(64)
    assert (m.num_groups, m.eps) == (4, 1e-4)
    with pytest.raises(ValueError, match="'gn16' is already registered"):
        groupnorm.register_norm("gn16", nn.Identity)
    groupnorm.register_norm("gn16", lambda c: nn.Identity(), overwrite=True)
    assert isinstance(groupnorm.norm_layer("gn16")(64), nn.Identity)


def test_register_grouped_norm_gets_resolved_groups(scratch_registry: None) -> None:
    calls = []

    def factory(channels: int, num_groups: int) -> nn.Module:
        calls.append((channels, num_groups))
        return nn.GroupNorm(num_groups, channels)

    groupnorm.register_norm("torch_gn", factory, grouped=True)
    groupnorm.norm_layer("torch_gn", group_size=8)(32)
    groupnorm.norm_layer("torch_gn", num_groups=32, fallback="gcd", warn=False)(48)
    assert calls == [(32, 4), (48, 16)]


def test_norm_layer_pickles_and_reprs() -> None:
    layer = groupnorm.norm_layer("gn", group_size=16, eps=1e-3)
    assert repr(layer) == "norm_layer('gn', group_size=16, eps=0.001)"
    clone = pickle.loads(pickle.dumps(layer))
    assert clone(64).num_groups == 4


# --- grouping policy ------------------------------------------------------------------------------------------


def test_non_dividing_count_is_an_error_naming_c_and_g() -> None:
    with pytest.raises(ValueError, match="num_channels C=48 is not divisible by num_groups G=32"):
        groupnorm.norm_layer("gn")(48)
    with pytest.raises(ValueError, match="C=48 is not divisible by group_size=32"):
        groupnorm.norm_layer("gn", group_size=32)(48)


@pytest.mark.parametrize(
    "channels, kwargs, expected",
    [
        (24, {"num_groups": 32}, 8),  # gcd(24, 32) = 8 groups of 3
        (48, {"num_groups": 32}, 16),  # gcd = 16 groups of 3
        (16, {"num_groups": 32}, 8),  # gcd = 16 would leave 1 channel per group: 8 groups of 2
        (16, {"num_groups": 32, "min_group_size": 1}, 16),  # asked for: instance norm allowed
        (32, {"num_groups": 32}, 16),  # divides, but 1 channel per group is below the minimum
        (96, {"num_groups": 32}, 32),  # fits: unchanged
        (24, {"group_size": 16}, 3),  # groups of gcd(24, 16) = 8 channels
        (8, {"num_groups": 32, "min_group_size": 4}, 2),
        (1, {"num_groups": 32}, 1),  # a single channel: one group whatever the minimum
    ],
)
def test_gcd_fallback(channels: int, kwargs: dict, expected: int) -> None:
    layer = groupnorm.norm_layer("gn", fallback="gcd", warn=False, **kwargs)
    assert layer(channels).num_groups == expected
    assert channels % expected == 0
    changed = [c.num_channels for c in layer.changes]
    assert changed == ([] if expected == kwargs.get("num_groups") else [channels])


def test_fallback_reports_changes_with_a_warning() -> None:
    layer = groupnorm.norm_layer("gn", num_groups=32, fallback="gcd")
    with pytest.warns(groupnorm.GroupingWarning, match="C=24 num_groups=32 -> num_groups=8"):
        layer(24)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(64)  # no change, no warning
    assert [(c.num_channels, c.num_groups) for c in layer.changes] == [(24, 8)]
    assert "gcd(24, 32) = 8" in layer.changes[0].reason


@pytest.mark.parametrize(
    "channels, expected",
    [(16, 1), (32, 2), (48, 3), (64, 32), (96, 32), (2048, 32), (24, 2), (40, 4), (3, 1), (80, 5)],
)
def test_auto_rule(channels: int, expected: int) -> None:
    assert auto_num_groups(channels) == expected
    assert resolve_groups(channels, "auto").num_groups == expected
    size = channels // expected
    assert channels % expected == 0 and (expected == 32 or size <= 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_groups": "many"}, "num_groups='many'"),
        ({"num_groups": 0}, "num_groups=0"),
        ({"group_size": -2}, "group_size=-2"),
        ({"num_groups": 4, "min_group_size": 0}, "min_group_size=0"),
        ({"num_groups": 4, "fallback": "lcm"}, "fallback='lcm'"),
    ],
)
def test_resolve_groups_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_groups(16, **kwargs)
