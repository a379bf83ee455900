"""Clips from disk: ``ROOT/train/<class>/<clip>`` and ``ROOT/val/<class>/<clip>`` (or ``ROOT/test``).

A clip is a folder of frames (images, taken in file-name order) or a ``.pt`` file holding a uint8 tensor
(T, H, W, 3), as ``torch.save`` writes it. Every clip must have the same number of frames and the same frame size:
a clip of another length is an error naming it and both lengths (decode clips to a fixed length first). A run
taking fewer frames than a clip holds takes the middle ``frames`` consecutive frames.

Spec: ``clips:ROOT``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from groupnorm.repro.video.data import ClipData

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _read_clip(path: Path) -> torch.Tensor:
    """(T, H, W, 3) uint8."""
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"clips: clip folder {path} has no frames ({', '.join(IMAGE_SUFFIXES)})")
        frames = []
        for f in files:
            try:
                with Image.open(f) as im:
                    rgb = im.convert("RGB")
            except OSError as e:
                raise ValueError(f"clips: cannot read frame {f}: {e}") from None
            frames.append(
                torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
            )
        sizes = {tuple(f.shape) for f in frames}
        if len(sizes) > 1:
            raise ValueError(f"clips: frames of {path} differ in size: {sorted(sizes)}")
        return torch.stack(frames)
    try:
        clip = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means the file is not a clip
        raise ValueError(f"clips: cannot read clip {path}: {e}") from None
    if (
        not isinstance(clip, torch.Tensor)
        or clip.dtype != torch.uint8
        or clip.dim() != 4
        or clip.shape[-1] != 3
    ):
        raise ValueError(
            f"clips: {path} must hold a uint8 tensor (T, H, W, 3), got {getattr(clip, 'shape', clip)!r}"
        )
    return clip


def _read_split(root: Path, classes: list[str] | None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if not root.is_dir():
        raise FileNotFoundError(f"clips: {root} is not a directory")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    classes = classes or found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"clips: {root} has classes the training split lacks: {unknown}")
    clips, labels, names, length = [], [], [], None
    for label, name in enumerate(classes):
        folder = root / name
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
        for entry in entries:
            if not (entry.is_dir() or entry.suffix == ".pt"):
                continue
            clip = _read_clip(entry)
            if length is None:
                length, first = tuple(clip.shape), entry
            elif tuple(clip.shape) != length:
                raise ValueError(
                    f"clips: {entry} has {clip.shape[0]} frames of {clip.shape[1]}x{clip.shape[2]}, but {first} has "
                    f"{length[0]} of {length[1]}x{length[2]}: every clip must have the same length and frame size"
                )
            clips.append(clip)
            labels.append(label)
            names.append(entry)
    if not clips:
        raise ValueError(f"clips: {root} holds no clips (<class>/<clip folder or .pt>)")
    return torch.stack(clips).permute(0, 4, 1, 2, 3).contiguous(), torch.tensor(labels), classes


def middle_frames(clips: torch.Tensor, frames: int, what: str) -> torch.Tensor:
    """The middle ``frames`` consecutive frames of (N, C, T, H, W) clips."""
    t = clips.shape[2]
    if frames > t:
        raise ValueError(f"frames={frames} exceeds the {t} frames of the clips in {what}")
    start = (t - frames) // 2
    return clips[:, :, start : start + frames].contiguous()


def load_clip_folder(root: str, frames: int) -> ClipData:
    """The clips under ``root`` (see the module docstring), ``frames`` frames each."""
    path = Path(root)
    train_x, train_y, classes = _read_split(path / "train", None)
    test_root = path / "val" if (path / "val").is_dir() else path / "test"
    test_x, test_y, _ = _read_split(test_root, classes)
    if train_x.shape[2:] != test_x.shape[2:]:
        raise ValueError(
            f"clips: training clips are {tuple(train_x.shape[2:])} (T, H, W) but {test_root}'s are "
            f"{tuple(test_x.shape[2:])}: every clip must have the same length and frame size"
        )
    train_x, test_x = middle_frames(train_x, frames, str(path)), middle_frames(test_x, frames, str(path))
    return ClipData(f"clips:{root} ({frames} frames)", train_x, train_y, test_x, test_y, classes)


def load_clip_data(spec: str, frames: int) -> ClipData:
    """``moving[:OPTIONS]`` (generated, :mod:`.clips`) or ``clips:ROOT`` (from disk)."""
    from groupnorm.repro.video.clips import load_moving

    if spec == "moving" or spec.startswith("moving:"):
        return load_moving(spec.partition(":")[2], frames)
    if spec.startswith("clips:"):
        return load_clip_folder(spec.partition(":")[2], frames)
    raise ValueError(f"dataset: unknown clip data set {spec!r}; give moving[:OPTIONS] or clips:ROOT")
