"""Named video sweeps; flags override their values.

- ``video-cpu``: the paper's Kinetics comparison (§6.2) on generated moving-object clips (32×32 frames): BN and
  GN at 8 and 4 clips per device with 8-frame clips, and at 2 clips per device with 16-frame clips (the paper's
  longer clips at fewer clips per GPU); a 3-D ResNet-8, 2 devices; about 1 hour of two CPU cores as two
  single-thread workers (docs/results/video-cpu/BUDGET.md).
- ``video-tiny``: a few steps of each setting on tiny clips: a smoke test of the whole path.
- ``kinetics``: a clip folder (``--dataset clips:ROOT``), 8 devices, 32 frames at 8 and 4 clips per device and
  64 frames at 4, a 3-D ResNet-20 at width 4; meant for GPUs under torchrun.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "video-cpu": {
        "dataset": "moving:train=2000,test=600,size=32",
        "norms": ["bn", "gn"],
        "settings": [[8, 8], [8, 4], [16, 2]],  # [frames, clips per device]
        "seeds": 1,
        "model": "r3d8",
        "devices": 2,
        "epochs": 6,
        "base_lr": 0.1,
        "warmup_epochs": 0.5,
        "gn_groups": 8,
        "threads": 1,
    },
    "video-tiny": {
        "dataset": "moving:train=16,test=8,size=16",
        "norms": ["bn", "gn"],
        "settings": [[4, 4], [4, 2], [8, 1]],
        "seeds": 1,
        "model": "r3d8",
        "width": 0.5,
        "devices": 2,
        "epochs": 2,
        "warmup_epochs": 0.5,
        "gn_groups": 4,
        "threads": 1,
    },
    "kinetics": {
        "dataset": "clips:data/kinetics",  # override with --dataset clips:ROOT
        "norms": ["bn", "gn"],
        "settings": [[32, 8], [32, 4], [64, 4]],
        "seeds": 1,
        "model": "r3d20",
        "width": 4,
        "devices": 8,
        "epochs": 100,
        "base_lr": 0.1,
        "warmup_epochs": 5,
        "gn_groups": 32,
    },
}
