"""Named sweeps. Each preset is a set of flag values; flags given on the command line override them.

- ``demo``: scikit-learn digits (ships with scikit-learn, no download), BN vs GN vs LN vs IN over a range of
  images per device. It shows the mechanics end to end in minutes on two CPU cores; digits are too easy for
  BN's small-batch failure to show clearly (see the report).
- ``cifar10-cpu``: the paper's Figure 1 and Table 1 on CIFAR-10, sized to finish on two CPU cores (see
  docs/results/cifar10-cpu for the measured budget).
- ``cifar10``: CIFAR-10 at full scale (ResNet-20 on all 50k images), for a GPU.
- ``imagenet``: the paper's own setting: ResNet-50, 8 devices, 100 epochs, an ImageFolder root
  (``--dataset imagefolder:PATH`` with ``PATH/train`` and ``PATH/val``), streamed from disk with the ImageNet
  augmentation; meant for GPUs, e.g. ``torchrun --nproc_per_node 8 -m groupnorm repro --preset imagenet``.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "demo": {
        # Chosen by measurement on 2 CPU cores: ResNet-8 trains digits to a few % error in 15 epochs, and the
        # whole sweep (4 norms x 3 batch sizes) takes about 5 minutes; resnet20 at 8 epochs stayed at 10-45 %.
        "dataset": "digits",
        "model": "resnet8",
        "width": 1,
        "norms": ["bn", "gn", "ln", "in"],
        "batch_per_device": [32, 8, 2],
        "devices": 2,
        "epochs": 15,
        "base_lr": 0.4,
        "seeds": 1,
        # Tiny 8x8 images: one thread is as fast as two on an idle machine, and far faster on a busy one
        # (OpenMP threads of small ops spin against other processes).
        "threads": 1,
    },
    "cifar10-cpu": {
        # Sized by measurement on 2 shared CPU cores, one thread: an epoch of 10k training images plus 5k test
        # images takes ~25-35 s at b=32, ~40 s at b=8 and ~60-70 s at b=2 (per-step overhead of 8-image steps),
        # so one epoch of this grid (BN, GN at 32/8/2; LN, IN at 32, as the paper's Figure 1 and Table 1) is
        # ~5 minutes and 12 epochs ~60 minutes. GN uses G=8 throughout (2-8 channels per group in the 16-64 channel
        # layers of ResNet-8): the models' default would give the 16-channel stage a single group (LN).
        "dataset": "cifar10",
        "model": "resnet8",
        "width": 1,
        "norms": ["bn", "gn", "ln", "in"],
        "batch_per_device": [32, 8, 2],
        "batch_for_norm": {"ln": [32], "in": [32]},
        "groups": [8],
        "devices": 4,
        "epochs": 12,
        "train_subset": 10000,
        "test_subset": 5000,
        "base_lr": 0.1,
        # With the step schedule, 12 epochs leave only 4 at the base LR: BN at b=32 stalled at 52 % validation
        # error (54 % training error) after the first drop. Cosine keeps the LR up for longer.
        "schedule": "cosine",
        "seeds": 1,
        "threads": 1,
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
        "dataset": "imagefolder:data/imagenet",  # override with --dataset imagefolder:PATH
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
