"""Named sweeps. Each preset is a set of flag values; flags given on the command line override them.

- ``demo``: scikit-learn digits (ships with scikit-learn, no download), BN vs GN vs LN vs IN over a range of
  images per device. It shows the mechanics end to end in minutes on two CPU cores; digits are too easy for
  BN's small-batch failure to show clearly (see the report).
- ``cifar10-cpu``: the paper's Figure 1 and Table 1 on CIFAR-10, sized to finish on two CPU cores (see
  docs/results/cifar10-cpu for the measured budget).
- ``cifar10``: CIFAR-10 at full scale (ResNet-20 on all 50k images), for a GPU.
- ``imagenet``: the paper's own setting: ResNet-50, 8 devices, 100 epochs, an ImageFolder root. It needs the
  whole of ImageNet decoded into memory at ``image_size``; use it on a machine that has that memory.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "demo": {
        "dataset": "digits",
        "model": "resnet20",
        "width": 1,
        "norms": ["bn", "gn", "ln", "in"],
        "batch_per_device": [32, 8, 2],
        "devices": 2,
        "epochs": 6,
        "base_lr": 0.1,
        "seeds": 1,
    },
    "cifar10-cpu": {
        "dataset": "cifar10",
        "model": "resnet20",
        "width": 1,
        "norms": ["bn", "gn", "ln", "in"],
        "batch_per_device": [32, 8, 2],
        "devices": 4,
        "epochs": 15,
        "train_subset": 10000,
        "base_lr": 0.1,
        "seeds": 1,
    },
    "cifar10": {
        "dataset": "cifar10",
        "model": "resnet20",
        "norms": ["bn", "gn", "ln", "in"],
        "batch_per_device": [32, 16, 8, 4, 2],
        "devices": 8,
        "epochs": 100,
        "base_lr": 0.1,
        "seeds": 3,
    },
    "imagenet": {
        "dataset": "imagefolder:data/imagenet",
        "model": "resnet50",
        "norms": ["bn", "gn"],
        "batch_per_device": [32, 16, 8, 4, 2],
        "devices": 8,
        "epochs": 100,
        "base_lr": 0.1,
        "image_size": 224,
        "seeds": 1,
    },
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"preset: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return dict(PRESETS[name])
