"""BN -> GN conversion of model-zoo architectures (no pretrained weights, nothing downloaded).

Each converted model has no batch norm left, lists the layers whose group count the policy changed, trains one
step, and gives a sample the same output alone as inside a batch in train mode: the property that defines GN.
"""

import pytest
import torch
from torch import nn

import groupnorm

torchvision = pytest.importorskip("torchvision")

BATCH_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, torchvision.ops.misc.FrozenBatchNorm2d)


def _torchvision(name):
    return lambda: getattr(torchvision.models, name)(num_classes=10)


def _fpn_backbone():
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    # Detection backbones come with FrozenBatchNorm2d; GN replaces it and trains.
    return resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)


def _timm(name):
    def make():
        timm = pytest.importorskip("timm")
        return timm.create_model(name, pretrained=False, num_classes=10)

    return make


ZOO = {
    "tv-resnet50": _torchvision("resnet50"),
    "tv-resnext50_32x4d": _torchvision("resnext50_32x4d"),
    "tv-mobilenet_v3_large": _torchvision("mobilenet_v3_large"),
    "tv-efficientnet_b0": _torchvision("efficientnet_b0"),
    "tv-regnet_y_400mf": _torchvision("regnet_y_400mf"),
    "tv-fpn-resnet18": _fpn_backbone,
    "timm-resnet50": _timm("resnet50"),
    "timm-efficientnet_b0": _timm("efficientnet_b0"),
}


def _output(out):
    """A tensor from a classifier output or a detection backbone's feature dict."""
    if isinstance(out, dict):
        return torch.cat([v.flatten(1) for v in out.values()], dim=1)
    return out


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_converts_trains_and_is_batch_independent(name):
    torch.manual_seed(0)
    model = ZOO[name]()
    model, summary = groupnorm.convert_norms(model, "gn", num_groups=32, fallback="gcd", return_report=True)
    assert not any(isinstance(m, BATCH_NORM_TYPES) for m in model.modules()), "a batch norm survived"
    assert summary.replaced, "nothing was converted"
    for change in summary.group_changes:  # policy: gcd(C, 32) groups, never fewer than 2 channels per group
        assert change.num_channels % change.num_groups == 0 and change.num_channels // change.num_groups >= 2
    if name == "tv-mobilenet_v3_large":
        assert summary.group_changes, "channel counts like 24 and 40 are not divisible by 32"

    model.train()
    for m in model.modules():  # train-mode randomness (dropout, stochastic depth) is per sample by design
        if any(word in type(m).__name__ for word in ("Dropout", "DropPath", "StochasticDepth")):
            m.eval()
    x = torch.randn(3, 3, 32, 32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    _output(model(x)).square().mean().backward()
    optimizer.step()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no finite gradient for {pname}"
    # Not every parameter moves in the first step: zero-initialized last norms (timm's default) block the
    # gradient of the layers before them until their gamma leaves zero.
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))

    with torch.no_grad():
        alone = _output(model(x[1:2]))
        batched = _output(model(x))[1:2]
    torch.testing.assert_close(alone, batched, atol=1e-4, rtol=1e-4)
