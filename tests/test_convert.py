"""convert_norms on toy module trees, torchvision's resnet50 and a timm model."""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch
from torch import nn

import groupnorm
from groupnorm.testing import assert_close_verbose

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class Toy(nn.Module):
    """Every container kind, every batch norm kind, one frozen layer, one eval layer and a shared layer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(64, 64, 1), nn.BatchNorm2d(64, eps=1e-3))])
        self.heads = nn.ModuleDict({"video": nn.BatchNorm3d(32), "sync": nn.SyncBatchNorm(64)})
        self.inner = nn.Module()
        self.inner.norm = nn.BatchNorm1d(32)
        self.shared = self.inner.norm
        self.fc = nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](self.stem(x))
        x = self.heads["sync"](x)
        v = self.heads["video"](x[:, :32].unsqueeze(2).expand(-1, -1, 2, -1, -1))
        h = self.shared(self.fc(x.mean((2, 3)))) + v.mean((2, 3, 4))
        return self.inner.norm(h)


def _toy(dtype: torch.dtype = torch.float32) -> Toy:
    torch.manual_seed(0)
    model = Toy().to(dtype)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BATCH_NORMS):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
    model.blocks[0][1].eval()
    model.stem[1].weight.requires_grad_(False)
    return model


def _count(model: nn.Module, types: tuple[type, ...]) -> int:
    return sum(isinstance(m, types) for m in model.modules())


def test_nested_toy_model() -> None:
    model = _toy(torch.float64)
    before = {n: m for n, m in model.named_modules() if isinstance(m, BATCH_NORMS)}
    converted, summary = groupnorm.convert_norms(model, "gn", num_groups=8, return_report=True)
    assert converted is model
    assert _count(model, BATCH_NORMS) == 0
    paths = [r.path for r in summary.replaced]
    assert paths[:5] == ["stem.1", "blocks.0.1", "heads.video", "heads.sync", "inner.norm"]
    assert "shared with inner.norm" in summary.replaced[5].old and summary.group_changes == []
    assert model.shared is model.inner.norm  # sharing kept
    for path, old in before.items():
        new = model.get_submodule(path)
        assert isinstance(new, groupnorm.GroupNorm) and new.num_groups == 8, path
        assert new.num_channels == old.num_features and new.eps == old.eps
        assert new.training == old.training
        assert new.weight.dtype == torch.float64 and new.weight.device == old.weight.device
        assert new.weight.requires_grad == old.weight.requires_grad
        assert torch.equal(new.weight, old.weight) and torch.equal(new.bias, old.bias)
    assert model.blocks[0][1].eps == 1e-3 and not model.blocks[0][1].training
    y = model(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    y.sum().backward()
    assert y.shape == (2, 32) and model.stem[0].weight.grad is not None


def test_affine_follows_the_source_unless_asked() -> None:
    model = nn.Sequential(nn.BatchNorm2d(32, affine=False), nn.BatchNorm2d(32))
    groupnorm.convert_norms(model, "gn", num_groups=4)
    assert not model[0].affine and model[0].weight is None and model[1].affine
    model = nn.Sequential(nn.BatchNorm2d(32, affine=False))
    groupnorm.convert_norms(model, "gn", num_groups=4, affine=True)
    assert model[0].affine and bool((model[0].weight == 1).all())


def test_device_is_kept() -> None:
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32)).to("meta")
    groupnorm.convert_norms(model, "gn", num_groups=4)
    assert model[1].weight.device.type == "meta"


def test_summary_is_readable_and_serializable() -> None:
    with pytest.warns(groupnorm.GroupingWarning, match="changed the group count of 5 layer"):
        _, summary = groupnorm.convert_norms(_toy(), "gn", num_groups=64, fallback="gcd", return_report=True)
    changes = {c.path: c.num_groups for c in summary.group_changes}
    # 64 channels: 64 groups would hold 1 channel, below min_group_size=2; 32 channels: gcd 32, then 16
    assert changes == {"stem.1": 32, "blocks.0.1": 32, "heads.video": 16, "heads.sync": 32, "inner.norm": 16}
    text = str(summary)
    assert "stem.1: BatchNorm2d(64" in text and "group count changed in 5 layer(s)" in text
    assert "heads.video: C=32 num_groups=64 -> num_groups=16" in text
    assert summary.to_dict()["group_changes"][0]["path"] == "stem.1"


def test_strict_grouping_refuses_and_leaves_model_untouched() -> None:
    model = _toy()
    with pytest.raises(ValueError, match="C=32 is not divisible by num_groups G=64"):
        groupnorm.convert_norms(model, "gn", num_groups=64)
    assert _count(model, BATCH_NORMS) == 5 and _count(model, (groupnorm.GroupNorm,)) == 0  # 5: one is shared


@pytest.mark.parametrize(
    "kind, groups",
    [("ln", lambda c: 1), ("in", lambda c: c), ("gn", lambda c: 32)],
)
def test_other_kinds(kind: str, groups) -> None:
    model = nn.Sequential(nn.Conv2d(3, 64, 1), nn.BatchNorm2d(64))
    groupnorm.convert_norms(model, kind)
    assert isinstance(model[1], groupnorm.GroupNorm) and model[1].num_groups == groups(64)


def test_sync_batch_norm_back_to_batch_norm_keeps_statistics() -> None:
    model = nn.Sequential(nn.Conv3d(3, 8, 1), nn.SyncBatchNorm(8, momentum=0.3), nn.BatchNorm2d(8))
    with torch.no_grad():
        model[1].running_mean.uniform_()
        model[1].running_var.uniform_(1, 2)
        model[1].num_batches_tracked.fill_(7)
    old = model[1]
    _, summary = groupnorm.convert_norms(model, "bn", return_report=True)
    assert [r.path for r in summary.replaced] == ["1"]  # the BatchNorm2d is already a batch norm
    new = model[1]
    assert type(new) is groupnorm.layers.BatchNormNd and new.momentum == 0.3
    for name in ("running_mean", "running_var", "num_batches_tracked", "weight"):
        assert torch.equal(getattr(new, name), getattr(old, name)), name
    model.eval()
    assert model[1](torch.randn(2, 8, 2, 3, 3)).shape == (2, 8, 2, 3, 3)  # 5-D input, as SyncBatchNorm took


def test_to_sync_batch_norm() -> None:
    model = nn.Sequential(nn.BatchNorm1d(4), nn.BatchNorm2d(4))
    groupnorm.convert_norms(model, "syncbn")
    assert all(type(m) is nn.SyncBatchNorm for m in model)


def test_root_module_is_replaced() -> None:
    new, summary = groupnorm.convert_norms(nn.BatchNorm2d(64), "gn", return_report=True)
    assert isinstance(new, groupnorm.GroupNorm) and summary.replaced[0].path == ""


def test_subclasses() -> None:
    class PlainSubclass(nn.BatchNorm2d):
        pass

    class CustomForward(nn.BatchNorm2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    class NormAct(nn.BatchNorm2d):  # the shape of timm's BatchNormAct2d
        def __init__(self, c: int, act: nn.Module, drop: nn.Module | None = None) -> None:
            super().__init__(c)
            self.drop = drop or nn.Identity()
            self.act = act

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.drop(super().forward(x)))

    model = nn.Sequential(
        PlainSubclass(32),
        CustomForward(32),
        NormAct(32, nn.SiLU()),
        NormAct(32, nn.GELU(approximate="tanh")),
        NormAct(32, nn.Hardswish()),
        NormAct(32, nn.ReLU(), nn.Dropout(0.1)),
    )
    with pytest.warns(UserWarning, match="left 1 layer"):
        _, summary = groupnorm.convert_norms(model, "gn", num_groups=4, return_report=True)
    assert isinstance(model[0], groupnorm.GroupNorm) and model[0].activation is None
    assert model[1].__class__ is CustomForward
    assert [(s.path, s.type) for s in summary.skipped] == [("1", "CustomForward")]
    assert model[2].activation == "silu" and model[3].activation == "gelu_tanh"
    for i, act in ((4, nn.Hardswish), (5, nn.ReLU)):
        assert isinstance(model[i], nn.Sequential) and isinstance(model[i].act, act)
        assert isinstance(model[i].norm, groupnorm.GroupNorm)
    x = torch.randn(2, 32, 4, 4)
    expected = nn.functional.silu(nn.functional.group_norm(x, 4))
    assert_close_verbose(model[2](x), expected, atol=1e-5, rtol=1e-5, name="fused silu")


def test_torch_group_norms_move_onto_the_fused_op(implementation) -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 32, 1), nn.GroupNorm(8, 32, eps=1e-6), nn.SiLU(), groupnorm.GroupNorm(4, 32)
    )
    with torch.no_grad():
        model[1].weight.uniform_()
    x = torch.randn(2, 3, 5, 5)
    expected = model(x)
    _, summary = groupnorm.convert_norms(model, source="gn", return_report=True)
    assert [r.path for r in summary.replaced] == ["1"]
    assert type(model[1]) is groupnorm.GroupNorm and (model[1].num_groups, model[1].eps) == (8, 1e-6)
    implementation.calls.clear()  # (the unconverted model's own groupnorm.GroupNorm)
    assert_close_verbose(model(x), expected, atol=1e-5, rtol=1e-5, name="y")
    implementation.assert_implementation(calls=2)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((), {"kind": "batch"}, ValueError, "unknown norm kind 'batch'"),
        ((), {"source": "ln"}, ValueError, "source='ln'"),
        ((), {"kind": "ln", "num_groups": 4}, TypeError, "'ln' takes no grouping options"),
        ((), {"kind": groupnorm.norm_layer("gn"), "num_groups": 4}, ValueError, "num_groups=4"),
        ((), {"source": "gn", "num_groups": 4}, ValueError, "source='gn' keeps each layer's groups"),
        ((), {"fallback": "nearest"}, ValueError, "fallback='nearest'"),
    ],
)
def test_bad_arguments(args: tuple, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        groupnorm.convert_norms(_toy(), *args, **kwargs)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        groupnorm.convert_norms("resnet50")


def test_torchvision_resnet50() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet50(num_classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every resnet50 width divides by 32: no change, no warning
        _, summary = groupnorm.convert_norms(model, "gn", return_report=True)
    assert _count(model, BATCH_NORMS) == 0 and len(summary.replaced) == 53
    assert {m.num_groups for m in model.modules() if isinstance(m, groupnorm.GroupNorm)} == {32}
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_timm_efficientnet_with_norm_act_layers() -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=10)
    acts = {type(m.act) for m in model.modules() if isinstance(m, nn.BatchNorm2d) and hasattr(m, "act")}
    assert acts, "efficientnet_b0 is expected to use timm's BatchNormAct2d"
    with pytest.warns(groupnorm.GroupingWarning):
        _, summary = groupnorm.convert_norms(model, "gn", num_groups=32, fallback="gcd", return_report=True)
    assert _count(model, BATCH_NORMS) == 0 and not summary.skipped
    for change in summary.group_changes:
        m = model.get_submodule(change.path)
        assert m.num_groups == change.num_groups and m.num_channels % m.num_groups == 0
        assert m.num_channels // m.num_groups >= 2
    assert {c.num_channels for c in summary.group_changes} >= {16, 24, 40}
    assert any(isinstance(m, groupnorm.GroupNorm) and m.activation == "silu" for m in model.modules())
    model(torch.randn(2, 3, 32, 32)).sum().backward()


def test_timm_group_norm_classes_move_with_source_gn(implementation) -> None:
    # timm's GroupNorm and GroupNorm1 override forward only to choose timm's fast-norm path; GroupNormAct holds
    # drop and act: all three convert (onto the fused op, or with a process group onto DistributedGroupNorm)
    # instead of being skipped, with the same outputs.
    pytest.importorskip("timm")
    from timm.layers import GroupNorm as TimmGroupNorm
    from timm.layers import GroupNorm1, GroupNormAct

    torch.manual_seed(0)
    model = nn.Sequential(
        TimmGroupNorm(16, num_groups=4), nn.Conv2d(16, 8, 1), GroupNorm1(8), GroupNormAct(8, num_groups=2)
    )
    for m in model.modules():
        if isinstance(m, nn.GroupNorm):
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)
    x = torch.randn(2, 16, 5, 3)
    with torch.no_grad():
        expected = model(x)
    model, summary = groupnorm.convert_norms(model, source="gn", return_report=True)
    assert not summary.skipped and len(summary.replaced) == 3
    assert all(type(model[i]) is groupnorm.GroupNorm for i in (0, 2, 3))
    assert (model[0].num_groups, model[2].num_groups, model[3].activation) == (4, 1, "relu")
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)
    implementation.assert_implementation(calls=3)


def test_convert_norms_returns_the_model_ready_to_call(caplog) -> None:
    torch.manual_seed(0)
    stock = nn.Sequential(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32), nn.ReLU())
    x = torch.randn(2, 3, 8, 8)
    in_place = copy.deepcopy(stock)
    with caplog.at_level(logging.INFO, logger="groupnorm"):
        model = groupnorm.convert_norms(in_place, "gn")
    # the model itself (converted in place), not a tuple: callable at once
    assert model is in_place and isinstance(model, nn.Module)
    assert isinstance(model[1], groupnorm.GroupNorm) and model(x).shape == (2, 32, 6, 6)
    # return_report=True: the same converted model, with the summary that was logged
    other, summary = groupnorm.convert_norms(copy.deepcopy(stock), "gn", return_report=True)
    assert isinstance(summary, groupnorm.ConversionSummary) and [r.path for r in summary.replaced] == ["1"]
    assert repr(other) == repr(model)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(other(x), model(x), atol=0, rtol=0)
    records = [r for r in caplog.records if r.name == "groupnorm"]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert records[0].getMessage() == str(summary)
    assert logging.getLogger("groupnorm").handlers == []  # the library configures no logging


def test_convert_norms_of_a_norm_returns_its_replacement() -> None:
    model = groupnorm.convert_norms(nn.BatchNorm2d(64), "gn")
    assert isinstance(model, groupnorm.GroupNorm) and model(torch.randn(2, 64, 4, 4)).shape == (2, 64, 4, 4)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_convert_norms_return_report_must_be_a_bool(value: object) -> None:
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32))
    message = rf"return_report must be a bool \(True or False\), got return_report={value!r} of type"
    with pytest.raises(TypeError, match=message):
        groupnorm.convert_norms(model, "gn", return_report=value)
    assert type(model[1]) is nn.BatchNorm2d  # refused before anything changed
