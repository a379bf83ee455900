"""Benchmark shapes taken from real networks, each with its group count and where it comes from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """One input shape: ``name`` is stable across runs (used to resume and to compare)."""

    name: str
    shape: tuple[int, ...]
    groups: int
    source: str

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _resnet50(batch: int) -> list[Shape]:
    # Output of each ResNet-50 stage's bottleneck (the widest GN in the stage) at 224x224 input.
    stages = [(256, 56), (512, 28), (1024, 14), (2048, 7)]
    return [
        Shape(
            f"resnet50-s{i + 1}-n{batch}", (batch, c, hw, hw), 32, f"ResNet-50 stage {i + 1}, batch {batch}"
        )
        for i, (c, hw) in enumerate(stages)
    ]


RESNET50 = [s for batch in (2, 8, 32) for s in _resnet50(batch)]

DIFFUSION = [
    Shape("sd-vae-512x64", (1, 512, 64, 64), 32, "SD/FLUX VAE decoder mid block, batch 1"),
    Shape("sd-vae-256x128", (1, 256, 128, 128), 32, "SD/FLUX VAE decoder up block, batch 1"),
    Shape("sd-vae-128x256", (1, 128, 256, 256), 32, "SD/FLUX VAE decoder last up block, batch 1"),
    Shape("sd-unet-320x64", (2, 320, 64, 64), 32, "SD UNet first down block (CFG batch 2)"),
]

VIDEO = [Shape("video-3d-128x8x64", (1, 128, 8, 64, 64), 32, "3-D video VAE block (T=8, 64x64), batch 1")]

SEQUENCE = [Shape("seq-1d-512x1024", (4, 512, 1024), 32, "1-D sequence (audio/conformer), batch 4")]

# The shapes the GPU check reports on: batch-1 VAE decoder blocks at 512-2048 px, a video VAE block and ResNet-50
# training shapes (``scripts/gpu_check.sh``, ``scripts/host_overhead.py``, ``scripts/triton_compile_check.py``).
KEY_SHAPES = [
    Shape("vae-512x64", (1, 512, 64, 64), 32, "VAE decoder mid block, batch 1"),
    Shape("vae-256x256", (1, 256, 256, 256), 32, "VAE decoder up block (256 channels at 256x256), batch 1"),
    Shape(
        "vae-128x512", (1, 128, 512, 512), 32, "VAE decoder last up block (128 channels at 512x512), batch 1"
    ),
    Shape(
        "video-vae-128x20x256", (1, 128, 20, 256, 256), 32, "video VAE decoder block (T=20, 256x256), batch 1"
    ),
    Shape("resnet50-s1-n32", (32, 256, 56, 56), 32, "ResNet-50 stage 1, batch 32"),
    Shape("resnet50-s4-n32", (32, 2048, 7, 7), 32, "ResNet-50 stage 4, batch 32"),
    Shape("resnet50-s3-n8", (8, 1024, 14, 14), 32, "ResNet-50 stage 3, batch 8"),
]

ALL = RESNET50 + DIFFUSION + VIDEO + SEQUENCE + [s for s in KEY_SHAPES if not s.name.startswith("resnet50")]
BY_NAME = {s.name: s for s in ALL}

# The quick preset: one shape per family, sizes from cache-resident to DRAM-bound, under 2 minutes on 2 cores.
QUICK_NAMES = [
    "resnet50-s1-n2",
    "resnet50-s3-n8",
    "resnet50-s4-n32",
    "sd-vae-512x64",
    "sd-vae-256x128",
    "video-3d-128x8x64",
    "seq-1d-512x1024",
]


def lookup(names: list[str]) -> list[Shape]:
    """Shapes by name; also accepts ``NxCxHxW[:G]`` for an ad-hoc shape (G defaults to 32)."""
    out = []
    for name in names:
        if name in BY_NAME:
            out.append(BY_NAME[name])
            continue
        dims, _, groups = name.partition(":")
        try:
            shape = tuple(int(d) for d in dims.split("x"))
            g = int(groups) if groups else 32
        except ValueError:
            known = ", ".join(BY_NAME)
            raise ValueError(f"unknown shape {name!r}: use one of {known} or NxCxHxW[:G]") from None
        if len(shape) < 2 or shape[1] % g != 0:
            raise ValueError(f"shape {name!r}: need at least (N, C) with C divisible by G={g}")
        out.append(Shape(name, shape, g, "ad hoc"))
    return out
