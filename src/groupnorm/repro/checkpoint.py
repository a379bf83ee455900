"""Checksummed checkpoints of runs.

A checkpoint is written atomically (:func:`~groupnorm.repro.runtime.atomic_write_bytes`), so a process killed at
any moment leaves either the old or the new file, never half of one. Checkpoints carry a SHA-256 of their
payload, so a file damaged some other way is detected, not half-loaded.

The checksum is no defence against a crafted file (whoever writes it computes the digest too), so checkpoints are
unpickled with ``weights_only=True``: tensors, containers and plain values load, anything that would call code
(a pickled callable, an arbitrary class) is refused as :class:`CorruptCheckpoint` without running it. What a
checkpoint holds (hyper-parameters, state dicts, epoch records) needs nothing more.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from groupnorm.repro.runtime import atomic_write_bytes, atomic_write_jsonl

MAGIC = b"GNCKPT1\n"


class CorruptCheckpoint(RuntimeError):
    """A checkpoint that cannot be trusted: truncated, altered, or not a checkpoint at all."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CorruptCheckpoint` if the file is damaged, or if its payload holds anything but tensors,
    containers and plain values (it is then refused unread: loading never runs code from the file).
    """
    raw = Path(path).read_bytes()
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + 65:
        raise CorruptCheckpoint(f"{path} is not a groupnorm checkpoint (bad header)")
    digest, payload = raw[len(MAGIC) : len(MAGIC) + 64].decode(errors="replace"), raw[len(MAGIC) + 65 :]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CorruptCheckpoint(f"{path} fails its checksum (truncated or altered)")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure (weights_only refusals included) means the file cannot be used
        raise CorruptCheckpoint(f"{path} cannot be read: {e}") from e


def resume_run(
    run_dir: str | os.PathLike, hparams: dict, model, optimizer, *, main: bool, log, restore_rng: bool = False
) -> list[dict]:
    """The records of a run's finished epochs or rounds, with ``model`` and ``optimizer`` restored from
    ``run_dir/checkpoint.pt`` (and torch's random state when ``restore_rng``); ``[]`` when there is no checkpoint,
    or when it belongs to other hyper-parameters or is damaged (a warning is logged: the run restarts).

    The main process first removes temporary files of writes a kill cut short. Example::

        records = resume_run(run_dir, hp.to_dict(), model, optimizer, main=True, log=print)
    """
    run_dir = Path(run_dir)
    if main:
        for tmp in run_dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    path = run_dir / "checkpoint.pt"
    if not path.exists():
        return []
    try:
        state = load_checkpoint(path)
        if state.get("hparams") != hparams:
            raise CorruptCheckpoint(f"{path} belongs to other hyper-parameters")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if restore_rng and "rng" in state:
            torch.set_rng_state(state["rng"])
    except CorruptCheckpoint as e:
        log(f"warning: {e}; restarting run {run_dir.name} from scratch")
        return []
    return list(state["records"])


def save_run(
    run_dir: str | os.PathLike, hparams: dict, model, optimizer, records: list[dict], log_name: str, *,
    rng: bool = False,
) -> None:  # fmt: skip
    """Checkpoint a run after an epoch or round (weights, optimizer, records, and torch's random state when
    ``rng``), then rewrite its ``log_name`` JSONL from the same records: a kill between the two leaves the log one
    record behind, and :func:`resume_run` plus a rewrite of the log from the checkpoint repairs it."""
    state = {
        "hparams": hparams,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "records": records,
    }
    if rng:
        state["rng"] = torch.get_rng_state()
    save_checkpoint(Path(run_dir) / "checkpoint.pt", state)
    atomic_write_jsonl(Path(run_dir) / log_name, records)
