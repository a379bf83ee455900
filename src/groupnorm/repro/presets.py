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
        # The paper's Figure 1, Table 1 and Table 3 on all 50k CIFAR-10 images, sized for two CPU cores (two
        # single-thread workers sharing the sweep). The recipe was chosen on 5,000 images held out of the
        # training set (scripts/recipe_search.sh; docs/results/cifar10-cpu/BUDGET.md has the numbers).
        "dataset": "cifar10",
        "model": "resnet8",
        "width": 1,
        "shortcut": "conv",
        "zero_init_last": False,
        "norms": ["bn", "gn", "ln", "in", "gn+ws"],
        # the cells the paper compares first (32 and 2), then the rest of Figure 1
        "batch_per_device": [32, 2, 16, 8, 4],
        "batch_for_norm": {"ln": [32], "in": [32], "gn+ws": [32]},
        "gn_group_size": 4,
        "groups": [16, 8, 4, 2],
        "group_sizes": [2, 8, 16],
        "ablation_batch": [32],
        "seeds": 1,
        "seeds_at": {32: 2, 2: 2},
        "devices": 4,
        "epochs": 10,
        "base_lr": 0.05,
        "schedule": "cosine",
        "warmup_epochs": 1.5,
        "weight_decay": 5e-4,
        "channels_last": True,
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
