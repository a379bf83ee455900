"""The options a CIFAR recipe is chosen with: the held-out validation split, the shortcut and init flags,
channels_last training, per-batch seeds and a group ablation at one batch size, and the report rows they give."""

from __future__ import annotations

import json

import pytest
import torch

from groupnorm.cli import main
from groupnorm.repro.hparams import HParams
from groupnorm.repro.model import build_model
from groupnorm.repro.report import write_report
from groupnorm.repro.sweep import SweepSpec, run_sweep

from .conftest import synthetic_data


def test_validation_split_holds_out_training_images_and_drops_the_test_set():
    data = synthetic_data(n_train=60, n_test=20, classes=3)
    split = data.validation_split(15)
    assert (split.num_train, len(split.test_images)) == (45, 15)
    assert torch.bincount(split.test_labels).tolist() == [5, 5, 5]  # class-balanced
    # every held-out image is a training image of the original set, and none of them is still trained on
    rows = {tuple(x.flatten().tolist()) for x in data.train_images}
    held = {tuple(x.flatten().tolist()) for x in split.test_images}
    kept = {tuple(x.flatten().tolist()) for x in split.train_images}
    assert held <= rows and not held & kept and len(held | kept) == 60
    assert torch.equal(split.test_images, data.validation_split(15).test_images)  # the same on every call
    with pytest.raises(ValueError, match="val_split must be between 1 and the 59 training images"):
        data.validation_split(60)


def test_recipe_flags_reach_the_hyper_parameters(tmp_path, monkeypatch):
    from groupnorm.repro import command

    seen = {}

    def fake_run_sweep(spec, out, **kw):
        seen["spec"] = spec
        return []

    monkeypatch.setattr("groupnorm.repro.sweep.run_sweep", fake_run_sweep)
    code = main(["repro", "--dataset", "digits", "--val-split", "300", "--shortcut", "conv", "--zero-init-last",
                 "off", "--channels-last", "--out", str(tmp_path), "--quiet", "--no-report"])  # fmt: skip
    assert code == 0 and command is not None
    base = seen["spec"].base
    assert (base.val_split, base.shortcut, base.zero_init_last, base.channels_last) == (
        300,
        "conv",
        False,
        True,
    )
    assert HParams().zero_init_last and HParams().shortcut == "pad" and HParams().val_split is None


def test_shortcut_and_init_build_the_model_asked_for():
    conv = build_model(HParams(model="resnet8", norm="gn", shortcut="conv"), 10, 3)
    pad = build_model(HParams(model="resnet8", norm="gn", shortcut="pad"), 10, 3)
    assert conv.shortcut == "conv" and pad.shortcut == "pad"
    assert sum(p.numel() for p in conv.parameters()) > sum(p.numel() for p in pad.parameters())
    zi = build_model(HParams(model="resnet8", norm="gn", zero_init_last=True), 10, 3)
    nozi = build_model(HParams(model="resnet8", norm="gn", zero_init_last=False), 10, 3)
    assert float(zi.layer1[0].bn2.weight.detach().abs().sum()) == 0
    assert float(nozi.layer1[0].bn2.weight.detach().min()) == 1
    # resnet50 is the ImageNet model (50 = 6n + 2 too), and a CIFAR shortcut is refused for it by name
    assert type(build_model(HParams(model="resnet50", norm="gn"), 10, 3)).__name__ == "ResNet"
    with pytest.raises(ValueError, match="shortcut='conv' applies to CIFAR-style ResNets only"):
        build_model(HParams(model="resnet50", norm="gn", shortcut="conv"), 10, 3)
    with pytest.raises(ValueError, match="shortcut: unknown value 'B'"):
        HParams(shortcut="B")


def test_grid_order_seeds_at_and_ablation_at_one_batch_size():
    base = HParams(dataset="digits", group_size=4)
    spec = SweepSpec(
        base=base, norms=["bn", "gn", "ln", "gn+ws"], batch_per_device=[32, 2, 8],
        batch_for_norm={"ln": [32], "gn+ws": [32]},
        groups=[2, 8], group_sizes=[4, 8], ablation_batch=[32], seeds_at={32: 2, 2: 2},
    )  # fmt: skip
    cells = [(h.norm, h.groups, h.group_size, h.batch_per_device, h.seed) for h in spec.runs()]
    assert cells == [
        # first seeds of the main cells: Figure 1's first two batch sizes, then the norms with a batch list of
        # their own (LN, GN+WS at 32), then the remaining batch sizes; norms in the order given
        ("bn", None, None, 32, 0), ("gn", None, 4, 32, 0),
        ("bn", None, None, 2, 0), ("gn", None, 4, 2, 0),
        ("ln", None, None, 32, 0), ("gn+ws", None, 4, 32, 0),
        ("bn", None, None, 8, 0), ("gn", None, 4, 8, 0),
        # GN's ablation at 32 only, one seed, the main grouping (4 channels) not repeated; none for GN+WS
        ("gn", 2, None, 32, 0), ("gn", 8, None, 32, 0), ("gn", None, 8, 32, 0),
        # further seeds last, for the norms of Figure 1 (LN runs at 32 only: one seed)
        ("bn", None, None, 32, 1), ("gn", None, 4, 32, 1),
        ("bn", None, None, 2, 1), ("gn", None, 4, 2, 1),
    ]  # fmt: skip
    assert len({h.run_id() for h in spec.runs()}) == len(cells)


def test_sweep_with_validation_split_channels_last_and_ablation_report(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    data = synthetic_data(n_train=64, n_test=16, side=8, classes=4)
    monkeypatch.setattr("groupnorm.repro.sweep.load_dataset", lambda *a, **k: data)
    base = HParams(dataset="synthetic", model="resnet8", epochs=1, devices=2, group_size=4, val_split=16,
                   channels_last=True)  # fmt: skip
    spec = SweepSpec(base=base, norms=["bn", "gn"], batch_per_device=[4, 2], groups=[2], ablation_batch=[4])
    results = run_sweep(spec, tmp_path, quiet=True)
    assert len(results) == 5
    record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert record["config"]["val_split"] == 16 and record["config"]["channels_last"] is True
    assert record["images_per_second"] > 0
    report = write_report(tmp_path).read_text()
    # GN's row in the main tables is the grouping run at every batch size; the ablation holds both groupings
    assert "| GN 4ch |" in report.split("## Training error")[0]
    ablation = report.split("## Group ablation")[1].split("## Against")[0]
    assert "| GN G=2 | 4 |" in ablation and "| GN 4ch | 4 |" in ablation and "| GN 4ch | 2 |" not in ablation
    assert "## Training images per second" in report


def test_grid_flags_build_the_spec():
    from groupnorm.repro.classification_command import spec_from_args

    spec = spec_from_args(["--dataset", "digits", "--norms", "bn,gn", "--batch-per-device", "32,2",
                           "--gn-group-size", "4", "--groups", "2,8", "--ablation-batch", "32",
                           "--seeds-at", "32:2,2:3"])  # fmt: skip
    assert (spec.base.groups, spec.base.group_size) == (None, 4)
    assert spec.ablation_batch == [32] and spec.seeds_at == {32: 2, 2: 3} and spec.groups == [2, 8]
    seeds = [(h.norm, h.groups, h.batch_per_device, h.seed) for h in spec.runs()]
    assert seeds.count(("gn", None, 2, 2)) == 1 and ("gn", 2, 2, 0) not in seeds


def test_bad_seeds_at_is_named(capsys):
    with pytest.raises(SystemExit):
        main(["repro", "--seeds-at", "32=2"])
    assert "expected BATCH:SEEDS pairs like 32:2,2:2, got '32=2'" in capsys.readouterr().err
