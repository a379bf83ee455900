"""Where a training step of a sweep goes: data, forward, backward, optimizer, and by operator kind.

A run's step is timed phase by phase (the batch's augmentation and normalization, forward, backward, the SGD
update) in interleaved rounds over several configurations, and one profiled step per configuration splits the
operators into convolution, normalization, elementwise/other, loss and optimizer, the rest being Python.
``--gn-torch`` adds the same GN model built from ``torch.nn.GroupNorm``, to compare the op with torch's.

Example (the numbers of docs/results/cifar10-cpu/step-profile.md; run it on an otherwise idle machine)::

    python -m groupnorm.repro.step_profile --preset cifar10-cpu --batch-per-device 32,8,2 --gn-torch \\
        --rounds 9 --steps 10 --out docs/results/cifar10-cpu/step-profile.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from groupnorm.bench import op_kinds
from groupnorm.repro.data import ImageData
from groupnorm.repro.hparams import HParams
from groupnorm.repro.model import build_model
from groupnorm.repro.runtime import atomic_write_text, param_groups

PHASES = ("data", "forward", "backward", "optimizer")


def synthetic_cifar(n: int = 2048, seed: int = 0) -> ImageData:
    """Random 32x32 RGB images in CIFAR's shape: what a step costs does not depend on the pixels."""
    from groupnorm.repro.data import TORCHVISION_SETS

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 10
    augment = TORCHVISION_SETS["cifar10"][1]
    return ImageData(
        "cifar10-shaped", images, labels, images[:64], labels[:64], [str(i) for i in range(10)], augment
    )


class StepRunner:
    """One configuration's model, optimizer and data, stepping with a timer around each phase."""

    def __init__(self, hp: HParams, data: ImageData, model: nn.Module | None = None) -> None:
        torch.manual_seed(hp.seed)
        self.hp, self.data = hp, data
        self.memory_format = torch.channels_last if hp.channels_last else torch.contiguous_format
        model = model if model is not None else build_model(hp, data.num_classes, data.image_shape[0])
        self.model = model.to(memory_format=self.memory_format).train()
        # the run's own optimizer setup (weight decay groups as the sweep trains)
        self.optimizer = torch.optim.SGD(param_groups(model, hp), lr=hp.lr, momentum=hp.momentum)
        self.step_index = 0

    def step(self) -> dict[str, float]:
        """One training step; seconds spent in each of :data:`PHASES`."""
        n = self.hp.global_batch
        index = (torch.arange(n) + self.step_index * n) % self.data.num_train
        self.step_index += 1
        t0 = time.perf_counter()
        x, y = self.data.train_batch(index, self.hp.seed, 0)
        x = x.contiguous(memory_format=self.memory_format)
        t1 = time.perf_counter()
        loss = F.cross_entropy(self.model(x), y)
        t2 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        self.optimizer.step()
        t4 = time.perf_counter()
        return dict(zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True))


def time_phases(
    runners: dict[str, StepRunner], rounds: int = 7, steps: int = 5
) -> dict[str, dict[str, float]]:
    """Median seconds per phase and per step of each runner, over interleaved rounds of ``steps`` steps."""
    for r in runners.values():  # warm-up: allocator, kernel library, first-call costs
        r.step()
        r.step()
    samples: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in runners}
    for _ in range(rounds):
        for name, r in runners.items():
            per_round = defaultdict(float)
            for _ in range(steps):
                for phase, s in r.step().items():
                    per_round[phase] += s / steps
            for phase, s in per_round.items():
                samples[name][phase].append(s)
            samples[name]["step"].append(sum(per_round.values()))
    return {k: {p: statistics.median(v) for p, v in d.items()} for k, d in samples.items()} | {
        f"{k}/spread": {"step": max(d["step"]) / min(d["step"]) - 1} for k, d in samples.items()
    }


def operator_kinds(runner: StepRunner, steps: int = 3) -> dict[str, float]:
    """Seconds per step by operator kind (self CPU time) in a profiled run; ``python`` is the remainder."""
    return op_kinds.self_time_by_kind(runner.step, calls=steps, kinds=op_kinds.STEP_KINDS)


def _torch_gn_model(hp: HParams, data: ImageData) -> nn.Module:
    """The run's GN model with ``torch.nn.GroupNorm`` of the same grouping (unfused: torch's has no epilogue)."""
    ours = build_model(hp, data.num_classes, data.image_shape[0])
    groups = {m.num_channels: m.num_groups for m in ours.modules() if isinstance(m, nn.GroupNorm)}
    return build_model(hp, data.num_classes, data.image_shape[0], norm=lambda c: nn.GroupNorm(groups[c], c))


def profile_markdown(hps: dict[str, HParams], rounds: int, gn_torch: bool, steps: int = 5) -> str:
    data = synthetic_cifar()
    runners = {name: StepRunner(hp, data) for name, hp in hps.items()}
    if gn_torch:
        for name, hp in list(hps.items()):
            if hp.norm == "gn":
                runners[f"{name} torch.nn.GroupNorm"] = StepRunner(hp, data, _torch_gn_model(hp, data))
    phases = time_phases(runners, rounds=rounds, steps=steps)
    kinds = {name: operator_kinds(r) for name, r in runners.items()}
    threads = torch.get_num_threads()
    lines = [
        "# Where a training step goes",
        "",
        f"torch {torch.__version__}, {threads} thread(s); medians of {rounds} interleaved rounds of {steps} steps; "
        "random CIFAR-shaped images.",
        "",
        "| configuration | images/s | ms/step | spread | data | forward | backward | optimizer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runners.items():
        p = phases[name]
        lines.append(
            f"| {name} | {r.hp.global_batch / p['step']:.0f} | {1e3 * p['step']:.1f} | "
            f"{100 * phases[name + '/spread']['step']:.0f}% | "
            + " | ".join(f"{100 * p[ph] / p['step']:.0f}%" for ph in PHASES)
            + " |"
        )
    kind_names = op_kinds.kind_names(op_kinds.STEP_KINDS)
    lines += ["", "By operator kind (profiled steps, share of the step):", ""]
    lines += ["| configuration | " + " | ".join(kind_names) + " |", "|---|" + "---|" * len(kind_names)]
    for name, k in kinds.items():
        total = sum(k.values()) or 1.0
        lines.append(
            f"| {name} | " + " | ".join(f"{100 * k.get(n, 0) / total:.0f}%" for n in kind_names) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from groupnorm.repro.classification_command import spec_from_args
    from groupnorm.repro.threads import torch_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cifar10-cpu")
    p.add_argument("--norms", default="bn,gn", help="comma-separated norms")
    p.add_argument("--batch-per-device", default="32,2", help="comma-separated images per device")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5, help="steps per configuration in each round")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gn-torch", action="store_true", help="also time GN built from torch.nn.GroupNorm")
    p.add_argument("--out", help="write the markdown here (default: print it)")
    args = p.parse_args(argv)
    base = spec_from_args(["--preset", args.preset]).base
    hps = {
        f"{norm} b={b}": replace(base, norm=norm, batch_per_device=int(b))
        for b in args.batch_per_device.split(",")
        for norm in args.norms.split(",")
    }
    with torch_threads(args.threads):  # for the profile only: an in-process caller keeps its thread count
        md = profile_markdown(hps, args.rounds, args.gn_torch, args.steps)
    if args.out:
        atomic_write_text(Path(args.out), md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
