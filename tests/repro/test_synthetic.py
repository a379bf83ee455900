"""The generated textures set: deterministic, balanced, offline, and trainable through a sweep."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch

from groupnorm.repro.data import ImageData, load_dataset
from groupnorm.repro.hparams import HParams
from groupnorm.repro.sweep import SweepSpec, run_sweep
from groupnorm.repro.synthetic import CLASSES, DEFAULTS, make_textures, render_textures


def test_same_seed_same_bytes_other_seed_other_images():
    a = make_textures(n_train=40, n_test=20, seed=3)
    b = make_textures(n_train=40, n_test=20, seed=3)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.train_labels, b.train_labels)
    assert torch.equal(a.test_images, b.test_images) and torch.equal(a.test_labels, b.test_labels)
    c = make_textures(n_train=40, n_test=20, seed=4)
    assert not torch.equal(a.train_images, c.train_images)


def test_shapes_classes_labels_and_balance():
    data = make_textures(n_train=100, n_test=30, size=12)
    assert isinstance(data, ImageData)
    assert data.train_images.shape == (100, 3, 12, 12) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (30, 3, 12, 12)
    assert data.classes == CLASSES and data.num_classes == 10 == len(set(CLASSES))
    assert data.train_labels.dtype == torch.int64
    assert torch.bincount(data.train_labels, minlength=10).tolist() == [10] * 10
    assert torch.bincount(data.test_labels, minlength=10).tolist() == [3] * 10
    assert data.augment.pad == 1 and not data.augment.flip  # a flip would change the orientation class
    assert int(data.train_images.max()) > 100  # images use the range, not a sliver of it


def test_train_and_test_differ():
    data = make_textures(n_train=50, n_test=50)
    train = {bytes(x.numpy()) for x in data.train_images}
    assert not any(bytes(x.numpy()) in train for x in data.test_images)
    assert not torch.equal(data.train_labels, data.test_labels)


def test_classes_are_stripes_of_their_orientation():
    # without noise, clutter or jitter, a class's mean power spectrum peaks at its orientation
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 8)
    imgs = render_textures(labels, 16, rng, noise=0.0, jitter=0.0, clutter=0.0, contrast=1.0)
    gray = imgs.astype(np.float64).mean(1)
    power = np.abs(np.fft.fft2(gray - gray.mean((1, 2), keepdims=True))) ** 2
    ky, kx = np.meshgrid(np.fft.fftfreq(16), np.fft.fftfreq(16), indexing="ij")
    for c in range(10):
        p = power[labels == c].mean(0)
        i = np.unravel_index(np.argmax(p), p.shape)
        angle = np.degrees(np.arctan2(ky[i], kx[i])) % 180
        want = 36 * (c % 5)
        assert min(abs(angle - want), 180 - abs(angle - want)) < 15, (c, angle)
        assert (np.hypot(ky[i], kx[i]) > 0.2) == (c < 5)  # fine stripes: higher frequency


def test_spec_options_and_errors():
    data = load_dataset("textures:train=30,test=10,size=8,seed=2,noise=0.1,jitter=0,clutter=0.5,contrast=1")
    assert data.image_shape == (3, 8, 8) and data.num_train == 30 and len(data.test_images) == 10
    same = make_textures(30, 10, 8, 2, noise=0.1, jitter=0, clutter=0.5, contrast=1)
    assert torch.equal(data.train_images, same.train_images)
    assert set(DEFAULTS) == {"train", "test", "size", "seed", "noise", "jitter", "clutter", "contrast"}
    with pytest.raises(ValueError, match="keys"):
        load_dataset("textures:colour=1")
    with pytest.raises(ValueError, match="number"):
        load_dataset("textures:train=many")
    with pytest.raises(ValueError, match="at least"):
        make_textures(n_train=5)
    with pytest.raises(ValueError, match="contrast"):
        make_textures(n_train=10, n_test=2, contrast=0)


def test_needs_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    data = load_dataset("textures:train=20,test=10", download=True)
    assert data.num_train == 20


def test_one_epoch_sweep_runs_quickly(tmp_path, one_thread):
    t0 = time.perf_counter()
    spec = SweepSpec(
        base=HParams(
            dataset="textures:train=80,test=40,size=8", model="resnet8", devices=2, epochs=1, width=0.5
        ),
        norms=["bn", "gn"],
        batch_per_device=[4],
    )
    results = run_sweep(spec, tmp_path, quiet=True, report=False, device="cpu")
    assert len(results) == 2
    assert all(0 <= r["val_error"] <= 100 and r["epochs_done"] == 1 for r in results)
    assert (tmp_path / "summary.csv").exists()
    assert time.perf_counter() - t0 < 20
