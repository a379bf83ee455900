"""What every experiment's run uses, whatever it trains: where the process stands under torchrun, which device
it trains on, the machine it ran on, the optimizer's parameter groups, the order of the data, averaging buffers
and summing statistics over processes, and files written so that a kill never leaves half of one.

Example::

    with distributed_session("auto"):            # torchrun: one process group for the command; else nothing
        me = Dist.current()
        device = pick_device("auto", me.rank)
        order = epoch_order(len(train_set), seed=0, epoch=3)
        atomic_write_json("runs/x/result.json", {"machine": machine_info()})
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from groupnorm import machine

# ---- processes and devices -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank and world size (1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def current() -> Dist:
        if dist.is_available() and dist.is_initialized():
            return Dist(dist.get_rank(), dist.get_world_size())
        return Dist()


@contextlib.contextmanager
def distributed_session(run_on: str) -> Iterator[Dist]:
    """The process group of a command started by torchrun (``WORLD_SIZE`` > 1): NCCL when it trains on CUDA,
    gloo otherwise. When the body ends normally the processes wait for each other (rank 0 may still be writing the
    summary, and tearing gloo down under it can abort the others); the group is destroyed either way. Without
    torchrun: nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield Dist()
        return
    use_cuda = run_on != "cpu" and torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield Dist.current()
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def pick_device(device: str, rank: int) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu`` or ``cuda``; under torchrun the local rank's GPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", rank))  # torchrun sets it per node
    d = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(d)
    return d


def wrap_ddp(model: nn.Module, *, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` under DistributedDataParallel when several processes train it, else ``model`` itself.

    Gradients are averaged by DDP; buffers (BN running statistics) are not broadcast but averaged after each step
    by :func:`average_buffers`, which is what per-device BatchNorm needs."""
    if Dist.current().world == 1:
        return model
    with warnings.catch_warnings():
        # torch >= 2.14 renames broadcast_buffers; its replacement still syncs buffers at init, and torch 2.11
        # lacks it. The buffers are identical at init here (same seed), so either is right.
        warnings.simplefilter("ignore", FutureWarning)
        return nn.parallel.DistributedDataParallel(
            model, broadcast_buffers=False, find_unused_parameters=find_unused_parameters
        )


@torch.no_grad()
def average_buffers(model: nn.Module) -> None:
    """Average the floating-point buffers (BN running statistics) over the processes of the default group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(world)


def all_reduce_sum(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum a small CPU tensor over the processes (through ``device``, as NCCL needs); ``t`` itself in one."""
    if Dist.current().world == 1:
        return t
    on_device = t.to(device)
    dist.all_reduce(on_device)
    return on_device.cpu()


# ---- training -------------------------------------------------------------------------------------------------


def param_groups(model: nn.Module, config) -> list[dict]:
    """SGD's parameter groups: ``config.weight_decay`` on every weight, or on all but the normalization layers'
    gamma/beta when ``config.decay_norm_params`` is False (a config without that field decays them all)."""
    if getattr(config, "decay_norm_params", True):
        return [
            {
                "params": [p for p in model.parameters() if p.requires_grad],
                "weight_decay": config.weight_decay,
            }
        ]
    norm_params = {
        id(p) for m in model.modules() if "Norm" in type(m).__name__ for p in m.parameters(recurse=False)
    }
    decay = [p for p in model.parameters() if p.requires_grad and id(p) not in norm_params]
    no_decay = [p for p in model.parameters() if p.requires_grad and id(p) in norm_params]
    return [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training images in an epoch: a function of (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


# ---- records ---------------------------------------------------------------------------------------------------


def machine_info() -> dict:
    """Machine and versions, recorded with every result."""
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **machine.describe(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    try:
        from groupnorm._version import __version__

        info["groupnorm"] = __version__
    except ImportError:
        pass
    return info


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``path`` through a temporary file in the same folder, flushed to disk and renamed over the old one
    (``os.replace`` is atomic): a process killed at any moment leaves the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSONL file; ``[]`` when it does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
