"""The `groupnorm repro` command: errors for bad flags and missing data, presets, a tiny sweep end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from groupnorm.cli import main

from .conftest import synthetic_data


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--norms", "bn,batchnorm"], "argument --norms: unknown value 'batchnorm'"),
        (
            ["--batch-per-device", "32,0"],
            "argument --batch-per-device: expected positive numbers, got '32,0'",
        ),
        (["--devices", "two"], "argument --devices: expected int, got 'two'"),
        (["--seeds", "0"], "argument --seeds: expected a positive integer, got '0'"),
        (["--preset", "nope"], "invalid choice: 'nope'"),
        (["--schedule", "poly"], "invalid choice: 'poly'"),
    ],
)
def test_bad_flags_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["repro", *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--devices", "0"], "--devices 0: devices must be >= 1, got 0"),
        (["--val-split", "-3"], "--val-split -3: val_split must be >= 1, got -3"),
        (["--base-lr", "0"], "--base-lr 0.0: base_lr must be > 0, got 0.0"),
        (["detection", "--steps", "0"], "--steps 0: steps must be >= 1, got 0"),
        (["video", "--memory-format", "auto", "--width", "-1"], "--width -1.0: width must be > 0, got -1.0"),
    ],
)
def test_out_of_range_values_name_their_flag(argv, message, tmp_path, capsys):
    assert main(["repro", *argv, "--out", str(tmp_path / "never"), "--print-config"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_missing_data_offline_is_a_clear_error(tmp_path, capsys):
    # (a --data-root that does not exist fails earlier: tests/repro/test_preflight.py)
    (tmp_path / "empty").mkdir()
    code = main(["repro", "--dataset", "cifar10", "--data-root", str(tmp_path / "empty"), "--no-download",
                 "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "'cifar10' was not found under" in err and "train/<class>" in err and "--data-root" in err
    assert not (tmp_path / "out").exists()


def test_config_errors_are_reported_without_traceback(tmp_path, capsys):
    code = main(["repro", "--dataset", f"npz:{_npz(tmp_path)}", "--devices", "64", "--batch-per-device", "32",
                 "--out", str(tmp_path / "o2"), "--quiet", "--model", "resnet8"])  # fmt: skip
    assert code == 2 and "exceeds the" in capsys.readouterr().err


def test_report_subcommand_errors(tmp_path, capsys):
    assert main(["repro", "report"]) == 2
    assert main(["repro", "report", str(tmp_path)]) == 2
    assert "no results file" in capsys.readouterr().err


def _npz(tmp_path):
    data = synthetic_data(n_train=24, n_test=8)
    path = tmp_path / "d.npz"
    np.savez(path, images=data.train_images.permute(0, 2, 3, 1).numpy(), labels=data.train_labels.numpy())
    return path


def test_tiny_sweep_end_to_end_with_group_ablation(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    code = main(["repro", "--dataset", f"npz:{_npz(tmp_path)}", "--model", "resnet8", "--width", "1",
                 "--norms", "bn,gn,gn+ws", "--groups", "4", "--batch-per-device", "2", "--devices", "2",
                 "--epochs", "1", "--out", str(out), "--quiet", "--run-on", "cpu"])  # fmt: skip
    assert code == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["config"]["norm"], r["config"]["groups"]) for r in results} == {
        ("bn", None),
        ("gn", 4),
        ("gn+ws", 4),
    }
    for r in results:
        for key in ("run", "epoch", "train_loss", "train_error", "val_error", "seconds", "images_per_second"):
            assert key in r
        assert "train_seconds" not in r  # the committed records' keys: the transfer rounds' field is theirs
        for key in (
            "norm",
            "batch_per_device",
            "devices",
            "groups",
            "group_size",
            "seed",
            "dataset",
            "model",
            "epochs",
            "lr",
            "grouping",
        ):
            assert key in r["config"]
    gn = next(r for r in results if r["config"]["norm"] == "gn")
    assert "32ch:G=4" in gn["config"]["grouping"]
    assert json.loads((out / "meta.json").read_text())["command"]
    report = (out / "report.md").read_text()
    assert "| GN G=4 |" in report and "| GN+WS G=4 |" in report  # a norm's only grouping is its main row


def test_demo_preset_data_loads_without_network(monkeypatch):
    import socket

    from groupnorm.repro.classification_command import spec_from_args
    from groupnorm.repro.data import load_dataset

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    spec = spec_from_args(["--preset", "demo"])
    data = load_dataset(spec.base.dataset, spec.data_root, download=spec.download)
    assert data.num_train > 1000 and data.num_classes == 10
    assert len(spec.runs()) >= 2 * 3 * 2  # BN and GN at three batch sizes, at least two seeds each


def test_print_config_shows_the_resolved_sweep_and_writes_nothing(tmp_path, capsys):
    import json

    from groupnorm.cli import main

    out = tmp_path / "never"
    argv = ["repro", "--preset", "cifar10-cpu-long", "--epochs", "3", "--out", str(out), "--print-config"]
    assert main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["out"] == str(out) and shown["sweep"]["base"]["epochs"] == 3  # the flag over the preset
    assert shown["sweep"]["base"]["model"] == "resnet8" and len(shown["runs"]) == 4
    assert not out.exists()
