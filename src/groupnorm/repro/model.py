"""Build the model of a run: a ``groupnorm.models`` network with the run's normalization plugged in.

Besides the names of ``groupnorm.models.list_models()``, any CIFAR-style depth ``resnet<6n+2>`` is accepted
(``resnet8``, ``resnet14``, ``resnet44``): small models for a CPU budget.
"""

from __future__ import annotations

from collections import Counter

from torch import nn

from groupnorm.repro.devices import device_bn
from groupnorm.repro.hparams import HParams


def norm_factory(hp: HParams):
    """The ``norm=`` argument for the model: a kind string or a ``channels -> module`` callable."""
    import groupnorm

    if hp.norm == "bn":
        # Per-device statistics; with one device this is plain BatchNorm over b images.
        return device_bn(hp.batch_per_device)
    if hp.norm == "syncbn":
        return lambda c: nn.BatchNorm2d(c)  # statistics over the whole step (all devices)
    if hp.norm in ("gn", "gn+ws"):
        if hp.groups is None and hp.group_size is None:
            return "gn"  # the model's default grouping
        # Group counts a narrow layer cannot take fall back to gcd(C, G) (at least 2 channels per group);
        # the grouping actually used is recorded with every result (grouping_label).
        return groupnorm.norm_layer(
            "gn", num_groups=hp.groups, group_size=hp.group_size, fallback="gcd", warn=False
        )
    return hp.norm  # ln, in, none


def build_model(hp: HParams, num_classes: int, in_channels: int, norm=None) -> nn.Module:
    """The network of ``hp`` for ``num_classes`` classes and images of ``in_channels`` channels.

    ``norm`` (a kind or a ``channels -> module`` callable) replaces the one ``hp`` names, e.g. to build the same
    model with ``torch.nn.GroupNorm`` for a comparison.
    """
    import groupnorm
    from groupnorm import models

    kwargs = {
        "num_classes": num_classes,
        "norm": norm if norm is not None else norm_factory(hp),
        "zero_init_last": hp.zero_init_last,
        "width": hp.width,
    }
    if hp.norm == "gn+ws":
        kwargs["conv"] = groupnorm.WSConv2d
    if in_channels != 3:
        kwargs["in_channels"] = in_channels
    depth = models.cifar_depth(hp.model)
    if depth is not None:
        return models.CifarResNet(depth, shortcut=hp.shortcut, **kwargs)
    if hp.shortcut != "pad":
        raise ValueError(
            f"shortcut={hp.shortcut!r} applies to CIFAR-style ResNets only, not model {hp.model!r}"
        )
    if hp.model in models.MODELS and hp.width != 1:
        raise ValueError(f"width={hp.width} applies to CIFAR-style ResNets only, not model {hp.model!r}")
    kwargs.pop("width")  # the ImageNet ResNets have torchvision's widths
    return models.get_model(hp.model, **kwargs)


def grouping_label(model: nn.Module) -> str:
    """A one-line label of the normalization layers for run records, e.g. ``GroupNorm(16ch:G=1 ×7, 32ch:G=2 ×6)``
    (:func:`groupnorm.describe_norms` lists them one by one)."""
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for m in model.modules():
        name = type(m).__name__
        if hasattr(m, "num_groups") and hasattr(m, "num_channels"):
            counts[f"{m.num_channels}ch:G={m.num_groups}"] += 1
            kinds[name] += 1
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            counts[f"{m.num_features}ch"] += 1
            kinds[name] += 1
        elif name == "FrozenBatchNorm2d":  # torchvision's BN* (buffers only, no num_features)
            counts[f"{m.weight.numel()}ch"] += 1
            kinds[name] += 1
    if not kinds:
        return "no normalization"
    parts = ", ".join(f"{k} ×{v}" for k, v in counts.items())
    return f"{'/'.join(kinds)}({parts})"
