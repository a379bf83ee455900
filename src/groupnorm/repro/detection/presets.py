"""Named detection sweeps; flags override their values.

- ``detection-cpu``: the paper's COCO comparison (§6.1) on generated scenes of CIFAR-10 objects, 64 px canvases,
  a CIFAR ResNet-8 backbone pre-trained by the ``cifar10-cpu`` classification sweep (``--bn-backbone`` and
  ``--gn-backbone`` name its BN and GN checkpoints at 32 images per device), 2 devices × 2 images per step, the
  five variants; sized for about 2 hours of two CPU cores as two single-thread workers
  (docs/results/detection-cpu/BUDGET.md).
- ``detection-tiny``: generated shapes, a few steps of every variant: a smoke test of the whole path (a minute).
- ``coco``: the paper's own setting: ResNet-50-FPN, 8 devices × 2 images, COCO at 800 px, torchvision's head
  sizes; backbones from ``groupnorm repro --preset imagenet`` runs; meant for GPUs under torchrun.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "detection-cpu": {
        "dataset": "scenes:objects=cifar10,train=5000,test=200,canvas=64,max_objects=3,min_side=16,max_side=40",
        "variants": ["bn_frozen", "bn_finetune", "gn_backbone", "gn_all", "gn_scratch"],
        "images_per_device": [2],
        "seeds": 1,
        "backbone": "resnet8",
        "shortcut": "conv",
        "devices": 2,
        "steps": 1200,
        "steps_per_round": 300,
        "warmup_steps": 100,
        "base_lr": 0.04,  # lr 0.01 for the 4 images of a step (twice the linear rule: few steps)
        "fpn_channels": 64,
        "box_head_width": 256,
        "mask_head_channels": 64,
        "rois_per_image": 64,
        "gn_groups": 16,
        "threads": 1,
    },
    "detection-tiny": {
        "dataset": "scenes:objects=shapes,train=32,test=8,canvas=32,min_side=8,max_side=16",
        "variants": ["bn_frozen", "bn_finetune", "gn_backbone", "gn_all", "gn_scratch"],
        "images_per_device": [1],
        "seeds": 1,
        "devices": 2,
        "steps": 4,
        "steps_per_round": 2,
        "warmup_steps": 1,
        "fpn_channels": 16,
        "box_head_width": 32,
        "mask_head_channels": 16,
        "rois_per_image": 16,
        "gn_groups": 4,
        "threads": 1,
    },
    "coco": {
        "dataset": "coco:data/coco",  # override with --dataset coco:ROOT
        "variants": ["bn_frozen", "bn_finetune", "gn_backbone", "gn_all", "gn_scratch"],
        "images_per_device": [2],
        "seeds": 1,
        "backbone": "resnet50",
        "shortcut": "pad",
        "devices": 8,
        "steps": 90000,
        "steps_per_round": 5000,
        "warmup_steps": 500,
        "base_lr": 0.02,
        "image_size": 800,
        "max_image_size": 1333,
        "fpn_channels": 256,
        "box_head_width": 1024,
        "mask_head_channels": 256,
        "rois_per_image": 512,
        "gn_groups": 32,
    },
}
