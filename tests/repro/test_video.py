"""groupnorm repro video: generated clips whose class needs the motion, clip folders and their bad cases, the 3-D
ResNet with BN and GN over T, H, W, the command, and resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from groupnorm.cli import main as cli_main
from groupnorm.repro.devices import DeviceBatchNorm3d
from groupnorm.repro.runtime import read_jsonl
from groupnorm.repro.video.clips import MOTIONS, load_moving, object_side, track
from groupnorm.repro.video.command import configs_from_args, main
from groupnorm.repro.video.folder import load_clip_data, load_clip_folder
from groupnorm.repro.video.model import build_video_model

TINY = ["--preset", "video-tiny", "--quiet", "--run-on", "cpu"]


def test_clips_are_deterministic_and_classes_differ_by_motion_and_shape():
    a, b = load_moving("train=16,test=8,size=16", frames=4), load_moving("train=16,test=8,size=16", frames=4)
    assert torch.equal(a.train_clips, b.train_clips) and torch.equal(a.test_clips, b.test_clips)
    assert a.train_clips.shape == (16, 3, 4, 16, 16) and len(a.classes) == 8
    assert not torch.equal(a.train_clips[:8], a.test_clips)
    assert a.classes[:4] == ["disk-right", "disk-left", "disk-down", "disk-up"]
    longer = load_moving("train=16,test=8,size=16", frames=8)
    assert longer.train_clips.shape[2] == 8


def test_opposite_motions_visit_the_same_positions_so_frame_averages_cannot_tell_them_apart():
    size, frames = 32, 8
    travel = size - object_side(size)
    visited = {}
    for motion in MOTIONS:
        paths = [track(torch.Generator().manual_seed(s), frames, size, motion) for s in range(300)]
        axis = 1 if motion in ("right", "left") else 0
        steps = [p[-1][axis] - p[0][axis] for p in paths]
        assert all(s > 0 for s in steps) if motion in ("right", "down") else all(s < 0 for s in steps)
        assert all(0 <= y <= travel and 0 <= x <= travel for p in paths for y, x in p)
        # the same seeds give mirrored tracks: every position of a leftward track is a rightward one's mirror
        visited[motion] = sorted(
            travel - q[axis] if motion in ("left", "up") else q[axis] for p in paths for q in p
        )
    assert visited["right"] == visited["left"] and visited["down"] == visited["up"]
    right = [q[1] for s in range(300) for q in track(torch.Generator().manual_seed(s), frames, size, "right")]
    left = [
        q[1]
        for s in range(300)
        for q in track(torch.Generator().manual_seed(s + 10_000), frames, size, "left")
    ]
    # and over different clips, the positions' distributions agree (mean within half a pixel)
    assert abs(sum(right) / len(right) - sum(left) / len(left)) < 0.5


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_video_model_normalizes_over_time_height_width(norm):
    torch.manual_seed(0)
    model = build_video_model("r3d8", norm=norm, num_classes=8, clips_per_device=2, width=0.5, gn_groups=4)
    x = torch.randn(4, 3, 4, 16, 16)
    out = model(x)
    assert out.shape == (4, 8)
    out.sum().backward()
    kind = DeviceBatchNorm3d if norm == "bn" else __import__("groupnorm").GroupNorm
    assert sum(isinstance(m, kind) for m in model.modules()) >= 7
    conv = model.blocks[0].conv1
    assert conv.kernel_size == (3, 3, 3) and model.blocks[0].conv2.kernel_size == (1, 3, 3)
    y = model.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d))
    assert torch.allclose(y, out, atol=1e-4)
    with pytest.raises(ValueError, match="unknown video model 'c3d'"):
        build_video_model("c3d", norm=norm, num_classes=8, clips_per_device=2)


def test_device_batchnorm3d_uses_each_devices_clips():
    bn = DeviceBatchNorm3d(4, batch_per_device=2)
    x = torch.randn(6, 4, 3, 5, 5) * torch.arange(1, 7.0)[:, None, None, None, None]
    ref = torch.cat(
        [torch.nn.functional.batch_norm(x[i : i + 2], None, None, training=True) for i in (0, 2, 4)]
    )
    assert torch.allclose(bn(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="expected a 5-D input"):
        bn(torch.randn(4, 4, 5, 5))


def _write_folder(root: Path, lengths: dict[str, int]) -> None:
    """Clips as .pt tensors (T, H, W, 3), except one as a folder of PNG frames."""
    from PIL import Image

    for split in ("train", "val"):
        for ci, cls in enumerate(("jump", "run")):
            for k in range(2):
                name = f"{cls}{k}"
                t = lengths.get(f"{split}/{cls}/{name}", 6)
                clip = torch.full((t, 8, 8, 3), 40 * ci + k, dtype=torch.uint8)
                clip[:, 0, 0, 0] = torch.arange(t, dtype=torch.uint8)
                folder = root / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                if split == "train" and ci == 0 and k == 0:  # frames as images
                    (folder / name).mkdir()
                    for i, frame in enumerate(clip):
                        Image.fromarray(frame.numpy()).save(folder / name / f"{i:04d}.png")
                else:
                    torch.save(clip, folder / f"{name}.pt")


def test_clip_folder_reads_frames_and_tensors_and_takes_the_middle_frames(tmp_path):
    _write_folder(tmp_path, {})
    data = load_clip_folder(str(tmp_path), frames=4)
    assert data.classes == ["jump", "run"] and data.train_clips.shape == (4, 3, 4, 8, 8)
    assert data.train_labels.tolist() == [0, 0, 1, 1]
    assert data.train_clips[0, 0, :, 0, 0].tolist() == [1, 2, 3, 4]  # frames 1..4 of 0..5, read from PNGs
    assert int(data.train_clips[3, 1, 0, 1, 1]) == 41
    with pytest.raises(ValueError, match="frames=8 exceeds the 6 frames"):
        load_clip_folder(str(tmp_path), frames=8)


def test_clips_of_different_lengths_are_a_clear_error(tmp_path):
    _write_folder(tmp_path / "a", {"train/run/run1": 5})
    with pytest.raises(ValueError, match=r"run1.pt has 5 frames of 8x8, but .*jump0 has 6 of 8x8"):
        load_clip_folder(str(tmp_path / "a"), frames=4)
    _write_folder(
        tmp_path / "b", {"val/run/run0": 7, "val/run/run1": 7, "val/jump/jump0": 7, "val/jump/jump1": 7}
    )
    with pytest.raises(ValueError, match=r"training clips are \(6, 8, 8\).*\(7, 8, 8\)"):
        load_clip_folder(str(tmp_path / "b"), frames=4)
    (tmp_path / "c" / "train" / "x").mkdir(parents=True)
    (tmp_path / "c" / "train" / "x" / "bad.pt").write_bytes(b"not a tensor")
    with pytest.raises(ValueError, match="cannot read clip .*bad.pt"):
        load_clip_folder(str(tmp_path / "c"), frames=4)
    with pytest.raises(ValueError, match="unknown clip data set 'kinetics'"):
        load_clip_data("kinetics", 8)


@pytest.mark.usefixtures("one_thread")
def test_command_trains_bn_and_gn_at_every_setting_and_reports(tmp_path):
    out = tmp_path / "out"
    assert cli_main(["repro", "video", *TINY, "--out", str(out)]) == 0  # through the `groupnorm` program
    lines = (out / "summary.csv").read_text().splitlines()
    header = lines[0].split(",")
    for column in ("norm", "clips_per_device", "frames", "val_error", "seed"):
        assert column in header
    cells = {(r.split(",")[header.index("norm")], r.split(",")[header.index("frames")],
              r.split(",")[header.index("clips_per_device")]) for r in lines[1:]}  # fmt: skip
    assert cells == {(n, f, c) for n in ("bn", "gn") for f, c in (("4", "4"), ("4", "2"), ("8", "1"))}
    report = (out / "report.md").read_text()
    assert "8 frames, 1 clips/device" in report and "72.8" in report
    assert (out / "curves.png").stat().st_size > 0 and "curves.png" in report
    assert main(["report", str(out)]) == 0
    cfgs = configs_from_args(["--preset", "video-cpu", "--settings", "8x8,16x2", "--norms", "gn"])
    assert [(c.frames, c.clips_per_device, c.norm) for c in cfgs] == [(8, 8, "gn"), (16, 2, "gn")]
    assert (
        main(["--preset", "video-tiny", "--settings", "4x4", "--dataset", "clips:" + str(tmp_path / "none")])
        == 2
    )


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {
        **os.environ,
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.slow  # a subprocess started and killed with SIGKILL, then resumed: ~15 s
def test_sigkill_mid_sweep_resumes_exactly(tmp_path, capsys):
    argv = [*TINY, "--settings", "4x2", "--norms", "bn", "--epochs", "4", "--no-report"]
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "groupnorm", "repro", "video", *argv, "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(read_jsonl(out / "results.jsonl")) < 1:
        time.sleep(0.01)
    assert proc.poll() is None, "finished before it could be killed: " + proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(read_jsonl(out / "results.jsonl")) < 4
    capsys.readouterr()
    assert (
        main([*argv, "--out", str(out)]) == 0
    )  # resumed in this process: what the killed one left is enough
    assert "resuming" in capsys.readouterr().err
    records = read_jsonl(out / "results.jsonl")
    assert sorted(Counter(r["round"] for r in records).items()) == [(e, 1) for e in range(1, 5)]
    reference = {r["round"]: r for r in read_jsonl(tmp_path / "ref" / "results.jsonl")}
    for r in records:
        assert r["train_loss"] == pytest.approx(reference[r["round"]]["train_loss"], rel=1e-5)
        assert r["val_error"] == pytest.approx(reference[r["round"]]["val_error"])
