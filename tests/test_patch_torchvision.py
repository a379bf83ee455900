"""``groupnorm.patch`` on torchvision detection heads: their ``Conv2dNormActivation`` / GN -> ReLU Sequentials fuse,
outputs unchanged."""

import copy
from functools import partial

import pytest
import torch
from torch import nn

import groupnorm
from groupnorm.testing import assert_close_verbose

detection = pytest.importorskip("torchvision.models.detection")


def _gn_relu_pairs(model):
    # adjacent GroupNorm, ReLU children of a Sequential, counted from the stock model
    count = 0
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            children = list(m)
            count += sum(
                isinstance(a, nn.GroupNorm) and isinstance(b, nn.ReLU) for a, b in zip(children, children[1:])
            )
    return count


@pytest.mark.parametrize(
    "make",
    [
        lambda: detection.fcos.FCOSHead(32, num_anchors=1, num_classes=3, num_convs=2),
        lambda: detection.retinanet.RetinaNetHead(32, 2, 3, norm_layer=partial(nn.GroupNorm, 8)),
    ],
    ids=["fcos", "retinanet_v2"],
)
def test_detection_head_fuses_and_matches(make):
    torch.manual_seed(0)
    stock = make()
    with torch.no_grad():
        for m in stock.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.normal_(1, 0.5)
                m.bias.normal_(0, 0.5)
    patched, report = groupnorm.patch(copy.deepcopy(stock), trace=False, return_report=True)
    assert len(report.fused) == _gn_relu_pairs(stock) > 0 and report.left == []
    assert all(how == "Sequential" and name == "relu" for _, _, name, how in report.fused)
    features = [torch.randn(2, 32, 8, 8), torch.randn(2, 32, 4, 4)]
    expected, got = stock(features), patched(features)
    for key in expected:
        assert_close_verbose(got[key], expected[key], atol=1e-5, rtol=1e-5, name=key)
