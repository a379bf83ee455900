"""Fixed class-balanced orders of a dataset's images: held-out splits and subsets, the same in every run.

A fixed seed for held-out splits and subsets means that the same images are held out in every run and every seed,
so runs differ only in what the run seed controls (initialization, order, augmentation).

Example::

    >>> import torch
    >>> labels = torch.tensor([0, 0, 0, 1, 1, 1])
    >>> sorted(labels[balanced_order(labels)[:2]].tolist())   # any prefix is (nearly) class-balanced
    [0, 1]
"""

from __future__ import annotations

import torch

SPLIT_SEED = 20180322


def balanced_order(labels: torch.Tensor) -> torch.Tensor:
    """A fixed order of indices that interleaves the classes, so any prefix is (nearly) class-balanced."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    perm = torch.randperm(len(labels), generator=g)
    lab = labels[perm]
    # rank of each sample within its class, then sort by (rank, class): round-robin over classes
    rank = torch.zeros_like(lab)
    for c in lab.unique():
        m = lab == c
        rank[m] = torch.arange(int(m.sum()))
    key = rank * (int(labels.max()) + 1) + lab
    return perm[key.argsort(stable=True)]


def held_out_split(
    images: torch.Tensor, labels: torch.Tensor, fraction: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split into (train_images, train_labels, test_images, test_labels), stratified, the same on every call."""
    order = balanced_order(labels)
    n_test = max(1, round(len(labels) * fraction))
    test, train = order[:n_test].sort().values, order[n_test:].sort().values
    return images[train], labels[train], images[test], labels[test]
