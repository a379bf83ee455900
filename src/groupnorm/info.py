"""``groupnorm info``: versions, devices, and what runs a call of a given shape on each device and dtype.

The table asks :func:`groupnorm.ops.routing.route`, the decision ``groupnorm.group_norm`` and the op take, so it
reports what such a call really runs: in plain eager mode, and inside a compiled graph or an export (the op).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform

import torch

from groupnorm import machine
from groupnorm._version import __version__
from groupnorm.ops import registry
from groupnorm.ops.routing import route

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# what the library runs on (torch, triton, numpy) and what it integrates with (patch, convert, export, bench)
_PACKAGES = ("torch", "triton", "numpy", "torchvision", "timm", "diffusers", "onnx", "onnxruntime", "onnxscript",
             "liger-kernel")  # fmt: skip


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


def serving_table(shape: tuple[int, ...] = (8, 64, 32, 32), num_groups: int = 32) -> list[dict[str, str]]:
    """For each available device and dtype, what runs a plain ``group_norm(x, num_groups)`` on ``x`` of ``shape``:
    ``"eager"`` in plain eager mode, ``"graph"`` inside a compiled graph or an export (the registered op).

    Example::

        >>> rows = serving_table((2, 8, 4, 4), 4)
        >>> [r["eager"] for r in rows if r["device"] == "cpu" and r["dtype"] == "float32"]
        ['torch.nn.functional.group_norm']
    """
    rows = []
    for device in available_devices():
        for dtype in DTYPES:
            x = torch.empty(shape, dtype=dtype, device=device)
            rows.append(
                {
                    "device": device,
                    "dtype": str(dtype).removeprefix("torch."),
                    "eager": route(x, None, None, num_groups, 1e-5, "none", None, None, None).name,
                    "graph": route(x, inside_op=True).name,
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
    described = machine.describe()
    lines.append(
        f"cpu          {described['cpu']}, {described['cpu_count']} cores, L3 {described['cpu_l3'] or '?'}, "
        f"runs {described['cpu_isa']}"
    )
    lines.append(f"cpu kernels  {described['kernel_build']}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i}       {props.name}, {props.multi_processor_count} SMs")
    lines.append("")
    lines.append(
        "what runs group_norm(x, 32) for x of shape 8x64x32x32, eager / in a compiled graph or export:"
    )
    for row in serving_table():
        lines.append(f"  {row['device']:6s} {row['dtype']:9s} {row['eager']} / {row['graph']}")
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
    parser = subparsers.add_parser(
        "info", help="versions, devices and what serves a call on each device and dtype"
    )
    parser.set_defaults(func=_run)
