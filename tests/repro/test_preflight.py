"""Every `groupnorm repro` command checks its data set, data root, device and checkpoints before it draws a
progress bar or writes anything under --out, and its error names the flag the user typed."""

from __future__ import annotations

import pytest
import torch

from groupnorm.cli import main
from groupnorm.repro.checkpoint import save_checkpoint
from groupnorm.repro.hparams import HParams
from groupnorm.repro.model import build_model


def _fails_before_output(argv: list[str], out, capsys) -> str:
    """Run ``groupnorm ARGV --out OUT``: exit status 2, nothing at OUT, and the error line (returned)."""
    code = main([*argv, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert not out.exists(), f"{out} was created before the error"
    assert captured.out == "", "nothing is printed (no progress bar) before the error"
    return captured.err


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# --- groupnorm repro (classification) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "cifar11"], "--dataset cifar11: unknown dataset; choose one of digits, "),
        (["--dataset", "textures:colour=3"], "--dataset textures:colour=3: textures options are key=value"),
        (
            ["--dataset", "imagefolder:{tmp}/none"],
            "--dataset imagefolder:{tmp}/none: no such directory {tmp}/none",
        ),
        (["--dataset", "imagefolder:{tmp}"], "--dataset imagefolder:{tmp}: no directory {tmp}/train"),
        (["--dataset", "npz:{tmp}/d.npz"], "--dataset npz:{tmp}/d.npz: no such file {tmp}/d.npz"),
        (
            ["--dataset", "cifar10", "--data-root", "{tmp}/none", "--no-download"],
            "--data-root {tmp}/none: no such directory (--no-download: nothing is downloaded there)",
        ),
        (["--dataset", "digits", "--data-root", "{tmp}/none"], "--data-root {tmp}/none: no such directory"),
        (["--preset", "imagenet"], "--dataset imagefolder:data/imagenet (from --preset imagenet): no such"),
    ],
    ids=["unknown", "options", "folder", "train-folder", "npz", "data-root-offline", "data-root", "preset"],
)
def test_classification_checks_the_data_set_and_root_first(tmp_path, capsys, flags, message):
    flags = [f.format(tmp=tmp_path) for f in flags]
    err = _fails_before_output(["repro", *flags, "--quiet"], tmp_path / "out", capsys)
    assert message.format(tmp=tmp_path) in err


def test_classification_checks_the_device_first(tmp_path, capsys, no_cuda):
    err = _fails_before_output(
        ["repro", "--dataset", "digits", "--run-on", "cuda", "--quiet"], tmp_path / "out", capsys
    )
    assert "--run-on cuda: torch " in err and "use --run-on cpu" in err


def test_classification_data_the_loader_cannot_find_fails_before_output(tmp_path, capsys):
    # past the flag checks (the root exists), the data is loaded before the sweep writes or draws anything
    (tmp_path / "empty").mkdir()
    err = _fails_before_output(
        ["repro", "--dataset", "cifar10", "--data-root", str(tmp_path / "empty"), "--no-download", "--quiet"],
        tmp_path / "out",
        capsys,
    )
    assert "'cifar10' was not found under" in err and "--data-root" in err


# --- groupnorm repro detection --------------------------------------------------------------------------------

DETECTION = ["repro", "detection", "--preset", "detection-tiny", "--quiet"]


def _classifier_checkpoint(path, norm: str) -> None:
    hp = HParams(model="resnet8", shortcut="conv", norm=norm, groups=4 if norm == "gn" else None)
    state = {
        "hparams": hp.to_dict(),
        "model": build_model(hp, 10, 3).state_dict(),
        "optimizer": {},
        "records": [],
    }
    save_checkpoint(path, state)


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--dataset", "voc"],
            "--dataset voc: unknown detection data set; give scenes[:OPTIONS] or coco:ROOT",
        ),
        (["--dataset", "scenes:colour=3"], "--dataset scenes:colour=3: scenes: unknown option 'colour=3'"),
        (
            ["--dataset", "coco:{tmp}/coco"],
            "--dataset coco:{tmp}/coco: data root {tmp}/coco is not a directory",
        ),
        (["--preset", "coco"], "--dataset coco:data/coco (from --preset coco): data root data/coco is not a"),
        (
            ["--dataset", "scenes:objects=cifar10", "--data-root", "{tmp}/none", "--no-download"],
            "--data-root {tmp}/none: no such directory",
        ),
        (["--bn-backbone", "{tmp}/bn.pt"], "--bn-backbone {tmp}/bn.pt: no such file"),
        (["--variants", "gn_all", "--gn-backbone", "{tmp}"], "--gn-backbone {tmp}: not a file"),
        (["--variants", "gn_all", "--bn-backbone", "{tmp}/bn.pt"], "--bn-backbone {tmp}/bn.pt: no such file"),
    ],
    ids=["unknown", "options", "coco-root", "preset", "data-root", "bn-backbone", "directory", "unused-flag"],
)
def test_detection_checks_data_and_checkpoints_first(tmp_path, capsys, flags, message):
    pytest.importorskip("torchvision")
    flags = [f.format(tmp=tmp_path) for f in flags]
    err = _fails_before_output([*DETECTION, *flags], tmp_path / "out", capsys)
    assert message.format(tmp=tmp_path) in err


def test_detection_checks_each_backbone_checkpoint_holds_its_flags_norm(tmp_path, capsys):
    pytest.importorskip("torchvision")
    _classifier_checkpoint(tmp_path / "gn.pt", "gn")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    # the BN variants come first in the grid, the GN one last: its checkpoint is checked before any run
    err = _fails_before_output(
        [*DETECTION, "--variants", "bn_frozen,gn_all", "--bn-backbone", str(tmp_path / "gn.pt"),
         "--gn-backbone", str(tmp_path / "gn.pt")],
        tmp_path / "out",
        capsys,
    )  # fmt: skip
    assert f"--bn-backbone {tmp_path / 'gn.pt'}: variant 'bn_frozen' needs a BN backbone" in err
    assert "pretrained" not in err  # the flag, not the configuration field behind it
    err = _fails_before_output(
        [*DETECTION, "--variants", "gn_all", "--gn-backbone", str(tmp_path / "broken.pt")],
        tmp_path / "out",
        capsys,
    )
    assert f"--gn-backbone {tmp_path / 'broken.pt'}: " in err and "not a groupnorm checkpoint" in err


def test_detection_checks_the_device_first(tmp_path, capsys, no_cuda):
    pytest.importorskip("torchvision")
    err = _fails_before_output([*DETECTION, "--run-on", "cuda"], tmp_path / "out", capsys)
    assert "--run-on cuda: torch " in err


# --- groupnorm repro video ------------------------------------------------------------------------------------

VIDEO = ["repro", "video", "--preset", "video-tiny", "--quiet"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--dataset", "kinetics"],
            "--dataset kinetics: unknown clip data set; give moving[:OPTIONS] or clips:ROOT",
        ),
        (["--dataset", "moving:speed=2"], "--dataset moving:speed=2: moving: unknown option 'speed=2'"),
        (["--dataset", "clips:{tmp}/none"], "--dataset clips:{tmp}/none: no such directory {tmp}/none"),
        (
            ["--preset", "kinetics"],
            "--dataset clips:data/kinetics (from --preset kinetics): no such directory",
        ),
        # parses, but the clips are generated only when read: read before anything is written
        (["--dataset", "moving:size=8"], "--dataset moving:size=8: moving: size must be >= 16, got 8"),
    ],
    ids=["unknown", "options", "folder", "preset", "read-first"],
)
def test_video_checks_the_data_set_first(tmp_path, capsys, flags, message):
    flags = [f.format(tmp=tmp_path) for f in flags]
    err = _fails_before_output([*VIDEO, *flags], tmp_path / "out", capsys)
    assert message.format(tmp=tmp_path) in err


def test_video_checks_the_device_first(tmp_path, capsys, no_cuda):
    err = _fails_before_output([*VIDEO, "--run-on", "cuda"], tmp_path / "out", capsys)
    assert "--run-on cuda: torch " in err
