"""Data loaders on small local fixtures: ImageFolder, npz, digits, torchvision's MNIST files; augmentation."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from groupnorm.repro.augment import Augment, uniform
from groupnorm.repro.data import DataUnavailable, held_out_split, load_dataset


def _write_tree(root, split, classes, per_class, size=(12, 10), fmt="png"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        d = root / split / c
        d.mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"{i:03d}.{fmt}")


def test_imagefolder_train_and_test(tmp_path):
    pytest.importorskip("PIL")
    _write_tree(tmp_path, "train", ["cat", "dog"], 5)
    _write_tree(tmp_path, "test", ["cat", "dog"], 2, fmt="jpg")
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.classes == ["cat", "dog"]
    assert data.train_images.shape == (10, 3, 10, 12) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (4, 3, 10, 12)
    assert data.train_labels.tolist() == [0] * 5 + [1] * 5
    x, y = data.train_batch(torch.arange(4), seed=0, epoch=0)
    assert x.shape == (4, 3, 10, 12) and x.dtype == torch.float32 and y.tolist() == [0, 0, 0, 0]


def test_unreadable_image_is_named_with_a_clear_error(tmp_path, capsys):
    pytest.importorskip("PIL")
    from groupnorm.cli import main

    _write_tree(tmp_path, "train", ["cat", "dog"], 2)
    bad = tmp_path / "train" / "dog" / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataUnavailable, match=r"cannot read image .*broken\.png"):
        load_dataset(f"imagefolder:{tmp_path}")
    code = main(["repro", "--dataset", f"imagefolder:{tmp_path}", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2 and "broken.png" in capsys.readouterr().err


def test_imagefolder_without_test_split_holds_out_and_resizes(tmp_path):
    pytest.importorskip("PIL")
    _write_tree(tmp_path, "train", ["a", "b", "c"], 5)
    data = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert len(data.train_images) + len(data.test_images) == 15
    assert len(data.test_images) == 3 and data.test_labels.sort().values.tolist() == [0, 1, 2]  # stratified
    assert data.image_shape == (3, 8, 8)


def test_cifar_named_dataset_reads_local_tree(tmp_path):
    pytest.importorskip("PIL")
    _write_tree(tmp_path, "train", ["airplane", "ship"], 3, size=(32, 32), fmt="jpg")
    _write_tree(tmp_path, "test", ["airplane", "ship"], 1, size=(32, 32), fmt="jpg")
    data = load_dataset("cifar10", tmp_path, download=False)
    assert data.train_images.shape == (6, 3, 32, 32) and data.augment == Augment(pad=4, flip=True)


def test_npz_with_and_without_test_file(tmp_path):
    rng = np.random.default_rng(1)
    imgs, labels = rng.integers(0, 256, (20, 6, 6), dtype=np.uint8), np.arange(20) % 4
    np.savez(tmp_path / "tr.npz", images=imgs, labels=labels)
    np.savez(tmp_path / "te.npz", images=imgs[:5, :, :, None].repeat(3, -1)[:, :, :, :1], labels=labels[:5])
    held = load_dataset(f"npz:{tmp_path / 'tr.npz'}")
    assert held.train_images.shape[1:] == (1, 6, 6) and len(held.test_images) == 4 and held.num_classes == 4
    both = load_dataset(f"npz:{tmp_path / 'tr.npz'},{tmp_path / 'te.npz'}")
    assert len(both.train_images) == 20 and len(both.test_images) == 5
    assert torch.equal(both.train_images[:, 0], torch.from_numpy(imgs))


def test_npz_missing_arrays_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="'images' and 'labels'"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_digits_split_is_fixed_and_normalized():
    pytest.importorskip("sklearn")
    a, b = load_dataset("digits"), load_dataset("digits")
    assert len(a.train_images) + len(a.test_images) == 1797 and a.image_shape == (1, 8, 8)
    assert torch.equal(a.test_labels, b.test_labels) and torch.equal(a.test_images, b.test_images)
    x = a.normalize(a.train_images)
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2
    sub = a.subset(100)
    assert len(sub.train_images) == 100 and sub.train_labels.bincount().tolist() == [10] * 10


def _write_idx(path, arr):
    dims = arr.shape
    code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, code, len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    with gzip.open(str(path) + ".gz", "wb") as f:  # torchvision extracts nothing when the raw files exist
        f.write(header + arr.tobytes())
    path.write_bytes(header + arr.tobytes())


def test_mnist_through_torchvision_from_local_files(tmp_path):
    pytest.importorskip("torchvision")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for split, n in (("train", 12), ("t10k", 4)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    data = load_dataset("mnist", tmp_path, download=False)
    assert data.train_images.shape == (12, 1, 28, 28) and data.test_images.shape == (4, 1, 28, 28)
    assert data.num_classes == 10


def test_missing_dataset_offline_says_where_to_put_it(tmp_path):
    with pytest.raises(DataUnavailable, match=r"train/<class>.*--data-root") as e:
        load_dataset("cifar10", tmp_path / "nowhere", download=False)
    assert str(tmp_path / "nowhere") in str(e.value)


def test_unknown_dataset_names_the_value():
    with pytest.raises(ValueError, match="'imagenet5'"):
        load_dataset("imagenet5")


def test_held_out_split_is_stratified_and_disjoint():
    labels = torch.arange(100) % 5
    images = torch.arange(100, dtype=torch.uint8).reshape(100, 1, 1, 1)
    tr_x, tr_y, te_x, te_y = held_out_split(images, labels)
    assert te_y.bincount().tolist() == [4] * 5
    assert set(tr_x.flatten().tolist()).isdisjoint(te_x.flatten().tolist())


def test_augmentation_depends_only_on_seed_epoch_and_index():
    imgs = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    aug = Augment(pad=2, flip=True)
    idx = torch.arange(100, 116)
    whole = aug(imgs, idx, seed=3, epoch=5)
    # any split of the batch draws the same augmentation for the same sample
    halves = torch.cat([aug(imgs[:7], idx[:7], 3, 5), aug(imgs[7:], idx[7:], 3, 5)])
    assert torch.equal(whole, halves)
    assert not torch.equal(whole, aug(imgs, idx, seed=3, epoch=6))
    # each output is a shifted (and maybe flipped) window of its input: zero-padded translation
    padded = torch.nn.functional.pad(imgs, (2, 2, 2, 2))
    for i in range(16):
        candidates = [
            w
            for dy in range(5)
            for dx in range(5)
            for w in (padded[i, :, dy : dy + 8, dx : dx + 8], padded[i, :, dy : dy + 8, dx : dx + 8].flip(-1))
        ]
        assert any(torch.equal(whole[i], c) for c in candidates)


def test_uniform_is_spread_over_unit_interval():
    u = uniform(0, 0, torch.arange(20000), stream=0)
    assert 0 <= float(u.min()) and float(u.max()) < 1
    hist = torch.histc(u, bins=10, min=0, max=1)
    assert float(hist.min()) > 1800  # each tenth within 10 % of its share


def test_large_imagefolder_is_streamed_with_imagenet_augmentation(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    import groupnorm.repro.data as data_mod

    _write_tree(tmp_path, "train", ["a", "b"], 4, size=(40, 30), fmt="jpg")
    _write_tree(tmp_path, "val", ["a", "b"], 2, size=(30, 44), fmt="jpg")
    monkeypatch.setattr(data_mod, "IN_MEMORY_LIMIT", 0)  # pretend it is ImageNet
    data = load_dataset(f"imagefolder:{tmp_path}", image_size=16)
    assert type(data).__name__ == "LazyImageFolder"
    assert data.num_train == 8 and data.num_classes == 2 and data.image_shape == (3, 16, 16)
    x, y = data.train_batch(torch.tensor([0, 5, 7]), seed=1, epoch=2)
    assert x.shape == (3, 3, 16, 16) and y.tolist() == [0, 1, 1]
    assert torch.equal(x, data.train_batch(torch.tensor([0, 5, 7]), seed=1, epoch=2)[0])
    assert not torch.equal(x, data.train_batch(torch.tensor([0, 5, 7]), seed=1, epoch=3)[0])
    ((tx, ty),) = list(data.test_batches(10))
    assert tx.shape == (4, 3, 16, 16) and ty.tolist() == [0, 0, 1, 1]
