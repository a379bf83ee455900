"""groupnorm repro detection: generated scenes, COCO-format input and its bad cases, AP, every variant, backbones
from classification checkpoints, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchvision")
pytest.importorskip("pycocotools")

from groupnorm.repro.checkpoint import save_checkpoint  # noqa: E402
from groupnorm.repro.detection.coco import load_coco, load_detection_data  # noqa: E402
from groupnorm.repro.detection.command import configs_from_args, main  # noqa: E402
from groupnorm.repro.detection.config import VARIANTS, DetectionConfig  # noqa: E402
from groupnorm.repro.detection.evaluate import coco_metrics  # noqa: E402
from groupnorm.repro.detection.model import build_maskrcnn  # noqa: E402
from groupnorm.repro.detection.scenes import ObjectBank, SceneSplit, load_scenes  # noqa: E402
from groupnorm.repro.detection.train import DetectionTrainer  # noqa: E402
from groupnorm.repro.hparams import HParams  # noqa: E402
from groupnorm.repro.model import build_model  # noqa: E402
from groupnorm.repro.runtime import read_jsonl  # noqa: E402

TINY = "scenes:objects=shapes,train=12,test=4,canvas=32,min_side=8,max_side=16"
SMALL = dict(dataset=TINY, devices=2, images_per_device=1, steps=2, steps_per_round=1, warmup_steps=1,
             fpn_channels=16, box_head_width=32, mask_head_channels=16, rois_per_image=16, gn_groups=4)  # fmt: skip


def test_scenes_are_deterministic_with_object_shaped_masks_and_tight_boxes():
    data = load_scenes("train=20,test=5,canvas=48,max_objects=3,min_side=10,max_side=20")
    again = load_scenes("train=20,test=5,canvas=48,max_objects=3,min_side=10,max_side=20")
    not_rectangles = 0
    for i in range(20):
        image, t = data.train[i]
        image2, t2 = again.train[i]
        assert torch.equal(image, image2) and torch.equal(t["masks"], t2["masks"])
        assert image.shape == (3, 48, 48) and image.dtype == torch.uint8
        assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"]) >= 1
        assert ((t["labels"] >= 1) & (t["labels"] <= len(data.classes))).all()
        for box, mask in zip(t["boxes"], t["masks"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            box_area = (box[2] - box[0]) * (box[3] - box[1])
            not_rectangles += int(mask.sum()) < box_area
    assert not_rectangles >= 30  # the masks follow the objects, not their boxes
    assert not torch.equal(data.train[0][0], data.test[0][0])  # the splits are different scenes
    other_seed = load_scenes("train=20,test=5,canvas=48,min_side=10,max_side=20,seed=1")
    assert not torch.equal(data.train[0][0], other_seed.train[0][0])


def test_scene_objects_come_from_their_split_bank():
    """Training scenes paste the training bank's images and evaluation scenes the test bank's (CIFAR-10's splits)."""
    red = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    red[:, 0] = 255
    blue = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    blue[:, 2] = 255
    o = {"seed": 0, "canvas": 32, "max_objects": 2, "min_side": 8, "max_side": 16}
    train = SceneSplit(ObjectBank(["a", "b"], red, torch.tensor([0, 1])), 4, o, split_seed=1)
    test = SceneSplit(ObjectBank(["a", "b"], blue, torch.tensor([0, 1])), 4, o, split_seed=2)
    for split, channel in ((train, 0), (test, 2)):
        image, t = split[0]
        inside = t["masks"].any(0).bool()
        assert (image[channel][inside] > 200).all() and (image[2 - channel][inside] < 50).all()


def _scene_targets(n: int = 6):
    data = load_scenes("train=2,test=6,canvas=32,max_objects=3,min_side=8,max_side=16")
    return [data.test[i][1] for i in range(n)], [(32, 32)] * n, data.num_classes


def test_ap_of_a_perfect_prediction_is_one_and_of_wrong_classes_is_zero():
    targets, sizes, k = _scene_targets()
    perfect = [
        {**t, "scores": torch.ones(len(t["labels"])), "masks": t["masks"].float()[:, None]} for t in targets
    ]
    m = coco_metrics(targets, perfect, sizes, k)
    assert m == {"box_ap": 100.0, "box_ap50": 100.0, "mask_ap": 100.0, "mask_ap50": 100.0}
    wrong = [
        {**p, "labels": p["labels"] % (k - 1) + 1} for p in perfect
    ]  # every object labelled as another class
    assert coco_metrics(targets, wrong, sizes, k)["box_ap"] == 0.0
    shifted = [
        {**p, "boxes": p["boxes"] + 64} for p in perfect
    ]  # boxes far from the objects, masks still right
    m = coco_metrics(targets, shifted, sizes, k)
    assert m["box_ap"] == 0.0 and m["mask_ap"] == 100.0
    with pytest.raises(ValueError, match="one entry per image"):
        coco_metrics(targets, perfect[:-1], sizes, k)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.usefixtures("one_thread")
def test_every_variant_trains_a_few_steps_and_is_scored(tmp_path, variant):
    data = load_detection_data(TINY)
    result = DetectionTrainer(DetectionConfig(variant=variant, **SMALL), data, tmp_path, device="cpu").run()
    assert result["complete"] and result["rounds_done"] == 2
    assert all(0.0 <= result[k] <= 100.0 for k in ("box_ap", "mask_ap", "box_ap50"))
    assert torch.isfinite(torch.tensor(result["train_loss"]))
    expected = {"bn_frozen": "FrozenBatchNorm2d", "bn_finetune": "DeviceBatchNorm2d"}.get(
        variant, "GroupNorm"
    )
    assert result["grouping"].startswith(expected)
    assert [r["round"] for r in read_jsonl(tmp_path / "rounds.jsonl")] == [1, 2]


def _classifier_checkpoint(path: Path, norm: str, **kw) -> dict:
    hp = HParams(
        model="resnet8", shortcut="conv", norm=norm, groups=4 if norm.startswith("gn") else None, **kw
    )
    model = build_model(hp, 10, 3)
    with torch.no_grad():  # recognisable statistics and affine parameters
        for i, p in enumerate(model.state_dict().values()):
            if p.is_floating_point():
                p.copy_(torch.rand_like(p) + i)
    save_checkpoint(
        path, {"hparams": hp.to_dict(), "model": model.state_dict(), "optimizer": {}, "records": []}
    )
    return model.state_dict()


def test_backbones_load_from_classification_checkpoints(tmp_path):
    bn_state = _classifier_checkpoint(tmp_path / "bn.pt", "bn")
    gn_state = _classifier_checkpoint(tmp_path / "gn.pt", "gn")
    for variant, path, state in (("bn_frozen", "bn.pt", bn_state), ("bn_finetune", "bn.pt", bn_state),
                                 ("gn_backbone", "gn.pt", gn_state), ("gn_all", "gn.pt", gn_state)):  # fmt: skip
        model, origin = build_maskrcnn(
            DetectionConfig(**{**SMALL, "variant": variant, "pretrained": str(tmp_path / path)}), 7, 32
        )
        assert origin == str(tmp_path / path)
        body = model.backbone.body.state_dict()
        for key in ("conv1.weight", "bn1.weight", "bn1.running_var", "layer3.0.bn2.bias"):
            if key in body:
                assert torch.equal(body[key], state[key]), (variant, key)
        assert "bn1.running_var" in body or variant.startswith("gn")
    scratch, origin = build_maskrcnn(DetectionConfig(**{**SMALL, "variant": "gn_scratch"}), 7, 32)
    assert origin == "random" and not torch.equal(
        scratch.backbone.body.state_dict()["conv1.weight"], gn_state["conv1.weight"]
    )


@pytest.mark.usefixtures("one_thread")
def test_a_gn_ws_backbone_is_recorded_and_reported_as_its_own_row(tmp_path):
    from groupnorm.repro.detection.report import ap_table

    _classifier_checkpoint(tmp_path / "ws.pt", "gn+ws")
    cfg = DetectionConfig(**{**SMALL, "variant": "gn_all", "pretrained": str(tmp_path / "ws.pt")})
    result = DetectionTrainer(cfg, load_detection_data(TINY), tmp_path / "run", device="cpu").run()
    assert result["backbone_norm"] == "gn+ws" and result["backbone_init"] == str(tmp_path / "ws.pt")
    plain = {**result, **cfg.to_dict(), "box_ap": 10.0, "backbone_norm": "gn"}
    older = {k: v for k, v in plain.items() if k != "backbone_norm"}  # a summary written before the column
    table = ap_table([{**result, **cfg.to_dict()}, plain, older])
    assert "| GN+WS backbone + FPN + heads |" in table
    assert table.count("| GN backbone + FPN + heads |") == 1 and "10.00 ± 0.00" in table


def test_a_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    _classifier_checkpoint(tmp_path / "wide.pt", "gn", width=2)
    _classifier_checkpoint(tmp_path / "bn.pt", "bn")
    with pytest.raises(ValueError, match="another architecture.*'width': 2"):
        build_maskrcnn(DetectionConfig(**{**SMALL, "pretrained": str(tmp_path / "wide.pt")}), 7, 32)
    with pytest.raises(ValueError, match="needs a GN backbone.*norm 'bn'"):
        build_maskrcnn(
            DetectionConfig(**{**SMALL, "variant": "gn_backbone", "pretrained": str(tmp_path / "bn.pt")}),
            7,
            32,
        )
    hp = HParams(model="resnet8", shortcut="conv", norm="gn")
    state = build_model(HParams(model="resnet14", shortcut="conv", norm="gn"), 10, 3).state_dict()
    save_checkpoint(
        tmp_path / "liar.pt", {"hparams": hp.to_dict(), "model": state}
    )  # says resnet8, holds resnet14
    with pytest.raises(ValueError, match="does not fit the resnet8 backbone"):
        build_maskrcnn(DetectionConfig(**{**SMALL, "pretrained": str(tmp_path / "liar.pt")}), 7, 32)
    with pytest.raises(FileNotFoundError, match="pretrained: checkpoint .*nope.pt does not exist"):
        build_maskrcnn(DetectionConfig(**{**SMALL, "pretrained": str(tmp_path / "nope.pt")}), 7, 32)


def _write_coco(root: Path, *, missing: bool = False, outside: bool = False, empty: bool = False) -> None:
    from PIL import Image

    for split in ("train2017", "val2017"):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(1, 4):
            name = f"{i:03d}.png"
            if not (missing and split == "val2017" and i == 2):
                Image.new("RGB", (40, 30), (i * 40, 10, 10)).save(root / split / name)
            images.append({"id": i, "file_name": name, "width": 40, "height": 30})
            if empty and i == 3:
                continue
            x = 35 if (outside and i == 1 and split == "train2017") else 5
            anns.append({"id": 10 * i, "image_id": i, "category_id": 7 if i % 2 else 3, "iscrowd": 0,
                         "bbox": [x, 4, 12, 10], "area": 120.0,
                         "segmentation": [[x, 4, x + 12, 4, x + 12, 14, x, 14]]})  # fmt: skip
        spec = {"images": images, "annotations": anns,
                "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]}  # fmt: skip
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(spec))


def test_coco_format_reads_images_boxes_masks_and_classes(tmp_path):
    _write_coco(tmp_path)
    data = load_coco(str(tmp_path))
    assert data.classes == ["cat", "dog"] and len(data.train) == 3 and len(data.test) == 3
    image, t = data.train[0]
    assert image.shape == (3, 30, 40) and int(image[0, 0, 0]) == 40
    assert t["boxes"].tolist() == [[5.0, 4.0, 17.0, 14.0]] and t["labels"].tolist() == [
        2
    ]  # category 7 -> dog
    assert t["masks"].shape == (1, 30, 40) and 100 <= int(t["masks"].sum()) <= 160
    assert data.train[1][1]["labels"].tolist() == [1]


def test_coco_bad_input_is_a_clear_error_and_empty_images_a_counted_skip(tmp_path):
    _write_coco(tmp_path / "missing", missing=True)
    with pytest.raises(FileNotFoundError, match="missing from .*val2017.*'002.png'"):
        load_coco(str(tmp_path / "missing"))
    _write_coco(tmp_path / "outside", outside=True)
    with pytest.raises(ValueError, match=r"annotation 10 has bbox \[35, 4, 12, 10\] outside image 1 \(40x30"):
        load_coco(str(tmp_path / "outside"))
    _write_coco(tmp_path / "empty", empty=True)
    data = load_coco(str(tmp_path / "empty"))
    assert len(data.train) == 2 and data.skipped["train images without annotations"] == 1
    with pytest.raises(FileNotFoundError, match="data root .* is not a directory"):
        load_coco(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="unknown detection data set 'voc'"):
        load_detection_data("voc")
    with pytest.raises(ValueError, match="scenes: unknown option 'objekts=shapes'"):
        load_scenes("objekts=shapes")


def test_command_runs_reports_and_lists_skips(tmp_path, capsys):
    _write_coco(tmp_path / "coco", empty=True)
    out = tmp_path / "out"
    argv = ["--dataset", f"coco:{tmp_path / 'coco'}", "--variants", "gn_all", "--images-per-device", "1",
            "--devices", "2", "--steps", "1", "--steps-per-round", "1", "--warmup-steps", "0", "--fpn-channels", "16",
            "--box-head-width", "32", "--mask-head-channels", "16", "--rois-per-image", "8", "--gn-groups", "4",
            "--out", str(out), "--quiet", "--run-on", "cpu"]  # fmt: skip
    assert main(argv) == 0
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    for column in ("variant", "images_per_device", "devices", "box_ap", "mask_ap", "seed"):
        assert column in header
    report = (out / "report.md").read_text()
    assert "train images without annotations: 1" in report and "40.0 / 34.8" in report
    assert (out / "curves.png").stat().st_size > 0 and "curves.png" in report
    assert main(["report", str(out)]) == 0
    assert main(["--variants", "gn_all", "--preset", "detection-tiny", "--dataset", "voc"]) == 2
    assert "--dataset voc: unknown detection data set" in capsys.readouterr().err
    cfgs = configs_from_args(["--preset", "detection-tiny", "--bn-backbone", "b.pt", "--gn-backbone", "g.pt"])
    assert [c.variant for c in cfgs] == list(VARIANTS)
    assert [c.pretrained for c in cfgs] == ["b.pt", "b.pt", "g.pt", "g.pt", None]


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {
        **os.environ,
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.slow  # a subprocess started and killed with SIGKILL, then resumed: ~20 s
def test_sigkill_mid_run_resumes_exactly_without_missing_or_repeated_rounds(tmp_path, capsys):
    rounds = 4
    argv = ["--preset", "detection-tiny", "--variants", "bn_finetune", "--steps", str(rounds),
            "--steps-per-round", "1", "--quiet", "--no-report", "--run-on", "cpu"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "groupnorm", "repro", "detection", *argv, "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(read_jsonl(out / "results.jsonl")) < 2:
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be killed: " + proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(read_jsonl(out / "results.jsonl")) < rounds
    capsys.readouterr()
    assert (
        main([*argv, "--out", str(out)]) == 0
    )  # resumed in this process: what the killed one left is enough
    assert "resuming" in capsys.readouterr().err
    records = read_jsonl(out / "results.jsonl")
    counts = Counter((r["run"], r["round"]) for r in records)
    assert all(c == 1 for c in counts.values()) and len(counts) == rounds
    reference = {(r["run"], r["round"]): r for r in read_jsonl(tmp_path / "ref" / "results.jsonl")}
    # the checkpoint holds weights, optimizer and random state: the resumed run is the same run
    for r in records:
        ref = reference[(r["run"], r["round"])]
        assert r["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-4), (r["run"], r["round"])
        assert r["box_ap"] == pytest.approx(ref["box_ap"], abs=1e-3), (r["run"], r["round"])
    assert main([*argv, "--out", str(out)]) == 0  # a third time: the run is done, nothing is rerun
    assert read_jsonl(out / "results.jsonl") == records
