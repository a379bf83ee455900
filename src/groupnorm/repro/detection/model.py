"""Mask R-CNN of a detection run: torchvision's ``MaskRCNN`` on a ResNet-FPN built from a classification model.

The backbone is the classification network of ``groupnorm repro`` (a CIFAR-style or ImageNet-style ResNet),
optionally with the weights of one of its runs (``checkpoint.pt``), wrapped in torchvision's ``BackboneWithFPN``
(``IntermediateLayerGetter`` over its stages and a ``FeaturePyramidNetwork`` with a max-pool level). The variant
sets the normalization:

- ``bn_frozen`` (BN*): the backbone's BatchNorms become torchvision's ``FrozenBatchNorm2d`` (the pre-trained
  statistics and affine, fixed); FPN and heads without normalization.
- ``bn_finetune``: BatchNorm trained at the small batch, statistics per virtual device (``DeviceBatchNorm2d``).
- ``gn_backbone``: the GN backbone; FPN and heads without normalization.
- ``gn_all``/``gn_scratch``: GN in the backbone, the FPN (``norm_layer``), the box head (torchvision's
  ``FastRCNNConvFCHead``, the paper's 4conv1fc) and the mask head (``MaskRCNNHeads``); from scratch: no weights.

Anchors are 8 × each level's stride (torchvision's 32..512 on strides 4..64), and the image transform is sized
to the data (``min_size`` = the canvas) instead of the 800 px default.
"""

from __future__ import annotations

import math

from torch import nn

from groupnorm.repro.checkpoint import CorruptCheckpoint, load_checkpoint
from groupnorm.repro.detection.config import DetectionConfig
from groupnorm.repro.devices import device_bn
from groupnorm.repro.hparams import HParams
from groupnorm.repro.model import build_model

BN_VARIANTS = ("bn_frozen", "bn_finetune")
GN_HEAD_VARIANTS = ("gn_all", "gn_scratch")


def _gn(groups: int):
    import groupnorm

    return groupnorm.norm_layer("gn", num_groups=groups, fallback="gcd", warn=False)


def needs_pretrained_norm(variant: str) -> str | None:
    """The norm a variant's pre-trained backbone must have (``bn``, ``gn``) or None (from scratch)."""
    if variant in BN_VARIANTS:
        return "bn"
    return None if variant == "gn_scratch" else "gn"


def checked_backbone(cfg: DetectionConfig) -> tuple[HParams, dict | None, int]:
    """The classification hyper-parameters of the backbone, its weights (or None) and its class count."""
    wanted = needs_pretrained_norm(cfg.variant)
    if cfg.pretrained is None or wanted is None:
        norm = "bn" if cfg.variant in BN_VARIANTS else "gn"
        groups = cfg.gn_groups if norm == "gn" else None
        hp = HParams(model=cfg.backbone, width=cfg.width, shortcut=cfg.shortcut, norm=norm, groups=groups,
                     zero_init_last=False)  # fmt: skip
        return hp, None, 10
    try:
        state = load_checkpoint(cfg.pretrained)
    except FileNotFoundError:
        raise FileNotFoundError(f"pretrained: checkpoint {cfg.pretrained} does not exist") from None
    except CorruptCheckpoint as e:
        raise ValueError(f"pretrained: {e}") from None
    if not isinstance(state.get("hparams"), dict) or not isinstance(state.get("model"), dict):
        raise ValueError(
            f"pretrained: {cfg.pretrained} is not a classification run's checkpoint (no hparams/model)"
        )
    hp = HParams.from_dict(state["hparams"])
    theirs = {"backbone": hp.model, "width": hp.width, "shortcut": hp.shortcut}
    ours = {"backbone": cfg.backbone, "width": cfg.width, "shortcut": cfg.shortcut}
    if theirs != ours:
        raise ValueError(
            f"pretrained: checkpoint {cfg.pretrained} is of another architecture: {theirs}, this run builds {ours}"
        )
    family = {"bn": "bn", "syncbn": "bn", "gn": "gn", "gn+ws": "gn"}.get(hp.norm)
    if family != wanted:
        raise ValueError(
            f"pretrained: variant {cfg.variant!r} needs a {wanted.upper()} backbone, but checkpoint "
            f"{cfg.pretrained} was trained with norm {hp.norm!r}"
        )
    fc = state["model"].get("fc.weight")
    return hp, state["model"], int(fc.shape[0]) if fc is not None else 10


def backbone_norm(cfg: DetectionConfig) -> str:
    """The norm the backbone's classification run trained with (``bn``, ``gn``, ``gn+ws``, ...)."""
    return checked_backbone(cfg)[0].norm


def build_backbone_classifier(cfg: DetectionConfig) -> tuple[nn.Module, str]:
    """The classification network with the variant's norm, weights loaded; and where they came from."""
    from torchvision.ops import FrozenBatchNorm2d

    hp, weights, num_classes = checked_backbone(cfg)
    norm = None
    if cfg.variant == "bn_frozen":
        norm = FrozenBatchNorm2d
    elif cfg.variant == "bn_finetune":
        norm = device_bn(cfg.images_per_device)
    model = build_model(hp, num_classes, 3, norm=norm)
    if getattr(model, "_stem_relu_fused", False):
        # the stem's norm applies the ReLU itself; IntermediateLayerGetter would run the `relu` child again, in
        # place on the norm's saved output
        model.relu = nn.Identity()
    if weights is None:
        return model, "random"
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:  # shapes or names differ: another architecture under the same name
        first = str(e).strip().splitlines()[:3]
        raise ValueError(
            f"pretrained: checkpoint {cfg.pretrained} does not fit the {cfg.backbone} backbone: {' '.join(first)}"
        ) from None
    return model, str(cfg.pretrained)


def _stages(model: nn.Module) -> list[str]:
    names = [n for n, _ in model.named_children() if n.startswith("layer") and n[5:].isdigit()]
    if not names:
        raise ValueError(
            f"backbone: {type(model).__name__} has no layer1, layer2, ... stages to build an FPN on"
        )
    return names


def build_maskrcnn(cfg: DetectionConfig, num_classes: int, canvas: int) -> tuple[nn.Module, str]:
    """The run's Mask R-CNN for ``num_classes`` (with background) and images of side ``canvas``; and the
    backbone's origin (a checkpoint path or ``random``)."""
    import torch
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    classifier, origin = build_backbone_classifier(cfg)
    stages = _stages(classifier)
    in_channels = [[m.out_channels for m in getattr(classifier, s).modules() if isinstance(m, nn.Conv2d)][-1]
                   for s in stages]  # fmt: skip
    heads_norm = _gn(cfg.gn_groups) if cfg.variant in GN_HEAD_VARIANTS else None
    c = cfg.fpn_channels
    backbone = BackboneWithFPN(
        classifier,
        return_layers={s: str(i) for i, s in enumerate(stages)},
        in_channels_list=in_channels,
        out_channels=c,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=heads_norm,
    )
    size = cfg.image_size or canvas
    with torch.no_grad():  # the levels' strides, from one probe image
        was = backbone.training
        backbone.eval()
        # powers of two: a level of an odd-sized map (25 -> 13 at 800 px) still has stride 64, not 61.5
        strides = [
            2 ** round(math.log2(size / f.shape[-1]))
            for f in backbone(torch.zeros(1, 3, size, size)).values()
        ]
        backbone.train(was)
    anchors = AnchorGenerator(
        sizes=tuple((round(8 * s),) for s in strides), aspect_ratios=((0.5, 1.0, 2.0),) * len(strides)
    )
    names = [str(i) for i in range(len(stages))]
    if heads_norm is not None:  # the paper's GN heads: 4conv1fc box head, GN in the mask head
        box_head = FastRCNNConvFCHead((c, 7, 7), [c] * 4, [cfg.box_head_width], norm_layer=heads_norm)
    else:  # torchvision's two-fc head
        box_head = FastRCNNConvFCHead((c, 7, 7), [], [cfg.box_head_width] * 2)
    m = cfg.mask_head_channels
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=size,
        max_size=cfg.max_image_size or size,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=250,
        box_roi_pool=MultiScaleRoIAlign(names, 7, 2),
        box_head=box_head,
        box_predictor=FastRCNNPredictor(cfg.box_head_width, num_classes),
        box_batch_size_per_image=cfg.rois_per_image,
        box_detections_per_img=50,
        mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
        mask_head=MaskRCNNHeads(c, [m] * 4, 1, norm_layer=heads_norm),
        mask_predictor=MaskRCNNPredictor(m, m, num_classes),
    )
    return model, origin
