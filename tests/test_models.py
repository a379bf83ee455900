"""ResNets: shapes, torchvision parity, the paper's initialization, norms, grouping and GN's batch independence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import groupnorm
from groupnorm import models
from groupnorm.testing import assert_close_verbose

IMAGENET = ["resnet18", "resnet34", "resnet50", "resnet101"]
CIFAR = ["resnet20", "resnet32", "resnet56", "resnet110"]


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", IMAGENET + CIFAR)
def test_every_model_builds_with_default_gn_and_runs(name: str) -> None:
    model = models.get_model(name, num_classes=7)
    assert _count_norms(model) > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():  # 16x16 is the smallest input every stage still sees (1x1 at the last)
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)


def _count_norms(model: nn.Module) -> int:
    return sum(isinstance(m, groupnorm.GroupNorm) for m in model.modules())


def test_forward_backward() -> None:
    model = models.resnet20(norm="gn", width=2, conv=groupnorm.WSConv2d)
    model(torch.randn(2, 3, 16, 16)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())


def test_resnet50_matches_torchvision() -> None:
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.resnet50()
    ours = models.resnet50(norm="bn")
    assert _params(ours) == _params(reference) == 25_557_032
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    ours.eval(), reference.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_close_verbose(ours(x), reference(x), atol=1e-4, rtol=1e-4, name="logits")
    # swapping the norm keeps the parameter count: GN has BN's per-channel weight and bias
    assert _params(models.resnet50(norm="gn")) == _params(reference)


@pytest.mark.parametrize("name, torchvision_name", [("resnet18", "resnet18"), ("resnet101", "resnet101")])
def test_other_imagenet_resnets_match_torchvision_size(name: str, torchvision_name: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    assert _params(models.get_model(name, norm="bn")) == _params(
        getattr(torchvision.models, torchvision_name)()
    )


def test_cifar_resnet_sizes() -> None:
    # He et al. (2016), Table 6: ResNet-20 has 0.27 M parameters, ResNet-110 1.7 M (option A shortcuts)
    assert round(_params(models.resnet20()) / 1e6, 2) == 0.27
    assert round(_params(models.resnet110()) / 1e6, 1) == 1.7
    assert _params(models.resnet20(shortcut="conv")) > _params(models.resnet20())
    assert models.resnet20(width=2).fc.in_features == 128


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20"])
def test_zero_init_last(name: str) -> None:
    model = models.get_model(name)
    last, others = [], []
    for m in model.modules():
        if isinstance(m, (models.BasicBlock, models.Bottleneck)):
            last.append(m.last_norm().weight)
    last_ids = {id(w) for w in last}
    others = [
        m.weight for m in model.modules() if isinstance(m, nn.GroupNorm) and id(m.weight) not in last_ids
    ]
    assert last and all(bool((w == 0).all()) for w in last)
    assert others and all(bool((w == 1).all()) for w in others)
    model = models.get_model(name, zero_init_last=False)
    assert all(bool((m.weight == 1).all()) for m in model.modules() if isinstance(m, nn.GroupNorm))


def test_zero_init_blocks_start_as_identity(implementation) -> None:
    model = models.resnet18(norm="gn").train()
    block = model.layer1[1]  # no downsample: out = relu(0 + identity)
    x = torch.rand(2, 64, 8, 8)
    assert_close_verbose(block(x), x, atol=0, rtol=0, name="block")
    implementation.assert_implementation(calls=2)  # the fused kernel's epilogue, not torch's three ops


def test_he_initialization() -> None:
    torch.manual_seed(0)
    model = models.resnet50()
    conv = model.layer4[0].conv2  # 512 -> 512, 3x3: fan_out = 4608
    expected = (2.0 / (512 * 9)) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1) < 0.01
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_conv_argument_builds_every_convolution() -> None:
    model = models.resnet50(conv=groupnorm.WSConv2d)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 53 and all(isinstance(m, groupnorm.WSConv2d) for m in convs)


@pytest.mark.parametrize(
    "norm, cls",
    [
        ("bn", nn.BatchNorm2d),
        ("ln", groupnorm.GroupNorm),
        ("none", nn.Identity),
        (groupnorm.norm_layer("gn", group_size=8), groupnorm.GroupNorm),
        (lambda c: nn.GroupNorm(4, c), nn.GroupNorm),
    ],
)
def test_norm_argument(norm: object, cls: type) -> None:
    model = models.resnet20(norm=norm)
    assert type(model.bn1) is cls and type(model.layer3[2].bn2) is cls
    with torch.no_grad():
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_default_grouping_is_recorded() -> None:
    infos = groupnorm.describe_norms(models.resnet20())
    assert models.summarize_grouping(infos) == {"16/1": 7, "32/2": 6, "64/32": 6}
    assert infos[0].to_dict() == {
        "path": "bn1",
        "type": "GroupNorm",
        "num_channels": 16,
        "num_groups": 1,
        "group_size": 16,
        "eps": 1e-5,
        "affine": True,
        "activation": "relu",  # fused by the model
    }
    resnet50 = groupnorm.describe_norms(models.resnet50())
    assert len(resnet50) == 53 and {i.num_groups for i in resnet50} == {32}
    bn = groupnorm.describe_norms(models.resnet20(norm="bn"))
    assert bn[0].num_groups is None and bn[0].type == "BatchNorm2d"


def _block_model(fuse: bool) -> nn.Module:
    layer = groupnorm.norm_layer("gn", num_groups=4)
    downsample = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), layer(32))
    return models.Bottleneck(16, 8, stride=2, downsample=downsample, norm_layer=layer, fuse=fuse)


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda fuse: models.resnet20(num_classes=5, fuse=fuse), (2, 3, 16, 16)),  # BasicBlocks, stem
        (_block_model, (2, 16, 8, 8)),  # a Bottleneck with a projection shortcut
    ],
    ids=["resnet20", "bottleneck"],
)
def test_fused_and_unfused_blocks_agree(build, shape: tuple[int, ...], implementation) -> None:
    # on the implementation: at this size both models would otherwise run torch's group_norm, add and relu
    torch.manual_seed(0)
    fused, plain = build(True), build(False)
    assert any(m.activation == "relu" for m in fused.modules() if isinstance(m, groupnorm.GroupNorm))
    assert all(m.activation is None for m in plain.modules() if isinstance(m, groupnorm.GroupNorm))
    with torch.no_grad():  # non-trivial affine parameters, so the fused epilogue matters
        for p in fused.parameters():
            if p.dim() == 1:
                p.normal_()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(shape)
    y1, y2 = fused(x), plain(x)
    implementation.assert_implementation()
    assert_close_verbose(y1, y2, atol=1e-4, rtol=1e-4, name="output")
    y1.square().sum().backward()
    y2.square().sum().backward()
    for (n, p1), p2 in zip(fused.named_parameters(), plain.parameters(), strict=True):
        assert_close_verbose(p1.grad, p2.grad, atol=1e-3, rtol=1e-3, name=f"grad {n}")


def test_a_sample_is_normalized_independently_of_its_batch(implementation) -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    gn, bn = models.resnet20(norm="gn").train(), models.resnet20(norm="bn").train()
    for model in (gn, bn):  # unit gammas everywhere, so every block contributes
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
    with torch.no_grad():
        assert_close_verbose(gn(x[:1]), gn(x)[:1], atol=1e-5, rtol=1e-5, name="gn alone vs in batch")
        implementation.assert_implementation()
        # the check can fail: batch norm in train mode mixes the samples of a batch
        assert not torch.allclose(bn(x[1:2]), bn(x)[1:2], atol=1e-3)


def test_get_model_errors_and_listing() -> None:
    assert models.list_models() == tuple(IMAGENET + CIFAR)
    with pytest.raises(ValueError, match="unknown model name='resnet200'; known models: resnet18"):
        models.get_model("resnet200")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 21}, "depth=21"),
        ({"depth": 20, "width": 0}, "width=0"),
        ({"depth": 20, "shortcut": "B"}, "shortcut='B'"),
        ({"depth": 20, "num_classes": 0}, "num_classes=0"),
        ({"depth": 20, "norm": "batchnorm"}, "unknown norm kind 'batchnorm'"),
    ],
)
def test_cifar_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        models.CifarResNet(**kwargs)


def test_fused_blocks_trace_without_graph_breaks() -> None:
    block = _block_model(fuse=True)
    explanation = torch._dynamo.explain(block)(torch.randn(2, 16, 8, 8))
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize("name,depth", [("resnet8", 8), ("resnet14", 14), ("resnet20", 20)])
def test_get_model_builds_every_cifar_depth_a_preset_uses(name, depth):
    model = groupnorm.models.get_model(name, norm="gn", num_classes=10)
    assert isinstance(model, groupnorm.models.CifarResNet)
    assert groupnorm.models.cifar_depth(name) == depth
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_get_model_refuses_other_names():
    with pytest.raises(ValueError, match=r"unknown model name='resnet9'.*resnet<6n\+2>"):
        groupnorm.models.get_model("resnet9")


@pytest.mark.parametrize("name", ["resnet152", "resnet26", "resnet50", "resnet008"])
def test_imagenet_names_are_not_taken_for_cifar_depths(name):
    assert groupnorm.models.cifar_depth(name) is None
