"""``groupnorm info``: versions, devices, and which implementation serves each device and dtype."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform

import torch

from groupnorm._version import __version__
from groupnorm.ops import registry

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_PACKAGES = ("torch", "triton", "numpy", "torchvision", "timm", "onnx", "onnxruntime", "numba")


def available_devices() -> list[str]:
    """Device types this process can allocate tensors on."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        devices.append("xpu")
    return devices


def serving_table(shape: tuple[int, ...] = (8, 64, 32, 32)) -> list[dict[str, str]]:
    """For each available device and dtype, the implementation that serves a call on a tensor of ``shape``."""
    rows = []
    for device in available_devices():
        for dtype in DTYPES:
            x = torch.empty(shape, dtype=dtype, device=device)
            rows.append(
                {
                    "device": device,
                    "dtype": str(dtype).removeprefix("torch."),
                    "implementation": registry.select(x).name,
                }
            )
    return rows


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that matter here ('-' when absent)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


def format_info() -> str:
    """The report ``groupnorm info`` prints."""
    lines = [f"groupnorm {__version__}", f"python {platform.python_version()} on {platform.platform()}"]
    lines += [f"{name:12s} {version}" for name, version in package_versions().items()]
    lines.append(f"threads      {torch.get_num_threads()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i}       {props.name}, {props.multi_processor_count} SMs")
    lines.append("")
    lines.append("implementation serving each device and dtype (shape 8x64x32x32):")
    for row in serving_table():
        lines.append(f"  {row['device']:6s} {row['dtype']:9s} {row['implementation']}")
    lines.append(
        "registered kernels: "
        + (", ".join(f"{impl.name} ({impl.device_type})" for impl in registry.implementations()) or "none")
    )
    lines.append(f"fallback: {registry.fallback().name} ({registry.fallback().description})")
    return "\n".join(lines)


def _run(_args: argparse.Namespace) -> int:
    print(format_info())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser("info", help="versions, devices and the implementation serving each dtype")
    parser.set_defaults(func=_run)
