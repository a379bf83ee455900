"""What a ``groupnorm repro`` command checks before it draws a progress bar or writes anything under ``--out``.

Without these checks a mistyped data set, a missing data directory, ``--run-on cuda`` on a machine without CUDA
or a wrong checkpoint path surfaced after the sweep directory, its ``meta.json`` and a progress bar were there,
and a backbone checkpoint of the wrong norm only when its run came up, possibly hours into the sweep. Each check
raises a ``ValueError`` whose message starts with the flag the user typed and its value (``--dataset``,
``--data-root``, ``--run-on``, ``--bn-backbone``, ...), never a configuration field's name; the commands print it
as their one error line.

Example::

    >>> check_run_on("cpu")
    >>> check_image_dataset("cifar11")
    Traceback (most recent call last):
    ...
    ValueError: --dataset cifar11: unknown dataset; choose one of digits, textures[:OPTIONS], cifar10, ...
    >>> check_data_root("/no/such/dir", downloads=False)
    Traceback (most recent call last):
    ...
    ValueError: --data-root /no/such/dir: no such directory
"""

from __future__ import annotations

import os
from pathlib import Path

# the configuration fields whose names the loaders put in front of their messages: the user typed a flag instead
_FIELD_PREFIXES = ("dataset: ", "pretrained: ")


def flagged(flag: str, value: object, problem: object) -> ValueError:
    """``ValueError("FLAG VALUE: problem")``; a loader's ``dataset:``/``pretrained:`` prefix is dropped."""
    text = str(problem)
    for prefix in _FIELD_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return ValueError(f"{flag} {value}: {text}")


def dataset_value(spec: str, given: str | None, preset: str | None) -> str:
    """How a message shows the data set: as typed, or saying that it is the preset's."""
    return spec if given is not None or not preset else f"{spec} (from --preset {preset})"


def check_run_on(run_on: str, flag: str = "--run-on") -> None:
    """``cuda`` needs a CUDA device torch can use (``auto`` falls back to the CPU, ``cpu`` always works)."""
    if run_on != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        why = "was built without CUDA" if torch.version.cuda is None else "sees no CUDA device"
        raise flagged(
            flag, run_on, f"torch {torch.__version__} {why}; use --run-on cpu, or auto (CUDA when present)"
        )


def check_data_root(
    data_root: str | os.PathLike | None, *, downloads: bool, why_not: str = "", flag: str = "--data-root"
) -> None:
    """A given data root must be a directory, unless the data set will be downloaded into it (torchvision creates
    it); ``why_not`` says why nothing is downloaded there (e.g. ``--no-download``)."""
    if data_root is None:
        return
    path = Path(data_root)
    if path.is_dir():
        return
    if path.exists():
        raise flagged(flag, data_root, "not a directory")
    if not downloads:
        raise flagged(flag, data_root, "no such directory" + (f" ({why_not})" if why_not else ""))


def check_checkpoint(path: str | os.PathLike, flag: str) -> None:
    """A checkpoint flag names an existing file (a run's ``checkpoint.pt``)."""
    p = Path(path)
    if not p.exists():
        raise flagged(flag, path, "no such file")
    if not p.is_file():
        raise flagged(flag, path, "not a file (give a run's checkpoint.pt)")


def _check_folder(flag: str, value: str, root: Path, split: str, layout: str) -> None:
    if not root.is_dir():
        raise flagged(flag, value, f"no such directory {root}")
    if not (root / split).is_dir():
        raise flagged(flag, value, f"no directory {root / split}; expected {layout}")


def check_image_dataset(spec: str, value: str | None = None, flag: str = "--dataset") -> bool:
    """The classification data set ``spec`` names one that ``groupnorm.repro.data.load_dataset`` knows, with
    options it takes and the paths it reads; returns whether it reads ``--data-root`` (torchvision's data sets)."""
    from groupnorm.repro.data import DATASET_FORMS, TORCHVISION_SETS

    value = value or spec
    if spec in TORCHVISION_SETS:
        return True
    if spec == "digits":
        return False
    if spec == "textures" or spec.startswith("textures:"):
        from groupnorm.repro.synthetic import textures_options

        try:
            textures_options(spec.partition(":")[2])
        except ValueError as e:
            raise flagged(flag, value, e) from None
        return False
    if spec.startswith("imagefolder:"):
        root = Path(spec.split(":", 1)[1])
        _check_folder(
            flag, value, root, "train", f"{root}/train/<class>/*.jpg (and optionally test/ or val/)"
        )
        return False
    if spec.startswith("npz:"):
        files = [f for f in spec.split(":", 1)[1].split(",") if f]
        if not 1 <= len(files) <= 2:
            raise flagged(flag, value, "expected npz:TRAIN or npz:TRAIN,TEST")
        for f in files:
            if not Path(f).is_file():
                raise flagged(flag, value, f"no such file {f}")
        return False
    raise flagged(flag, value, f"unknown dataset; choose one of {', '.join(DATASET_FORMS)}")


def check_detection_dataset(spec: str, value: str | None = None, flag: str = "--dataset") -> bool:
    """The detection data set ``spec`` (``scenes[:OPTIONS]`` or ``coco:ROOT[,OPTIONS]``) parses and its root
    exists; returns whether it reads ``--data-root`` (scenes of CIFAR-10 objects)."""
    value = value or spec
    if spec == "scenes" or spec.startswith("scenes:"):
        from groupnorm.repro.detection.scenes import DEFAULTS, parse_options

        try:
            options = parse_options(spec.partition(":")[2], DEFAULTS, "scenes")
        except ValueError as e:
            raise flagged(flag, value, e) from None
        return options["objects"] == "cifar10"
    if spec.startswith("coco:"):
        root = spec.partition(":")[2].split(",")[0]
        if not root:
            raise flagged(flag, value, "give the data set's root, e.g. coco:data/coco")
        if not Path(root).is_dir():
            raise flagged(flag, value, f"data root {root} is not a directory")
        return False
    raise flagged(flag, value, "unknown detection data set; give scenes[:OPTIONS] or coco:ROOT")


def check_clip_dataset(spec: str, value: str | None = None, flag: str = "--dataset") -> None:
    """The clip data set ``spec`` (``moving[:OPTIONS]`` or ``clips:ROOT``) parses and its folder exists."""
    value = value or spec
    if spec == "moving" or spec.startswith("moving:"):
        from groupnorm.repro.detection.scenes import parse_options
        from groupnorm.repro.video.clips import DEFAULTS

        try:
            parse_options(spec.partition(":")[2], DEFAULTS, "moving")
        except ValueError as e:
            raise flagged(flag, value, e) from None
        return
    if spec.startswith("clips:"):
        root = Path(spec.partition(":")[2])
        _check_folder(
            flag, value, root, "train", f"{root}/train/<class>/<clip folder or .pt> and val/ or test/"
        )
        return
    raise flagged(flag, value, "unknown clip data set; give moving[:OPTIONS] or clips:ROOT")


def check_data_flags(args, spec: str, check_dataset) -> None:
    """A command's ``--run-on``, ``--dataset`` (``spec``, checked by ``check_dataset``, which says whether it reads
    ``--data-root``) and ``--data-root`` (which must exist unless something may be downloaded into it)."""
    check_run_on(args.run_on)
    reads_root = check_dataset(spec, dataset_value(spec, args.dataset, args.preset))
    check_data_root(
        args.data_root,
        downloads=reads_root and not args.no_download,
        why_not="--no-download: nothing is downloaded there" if reads_root else "",
    )
