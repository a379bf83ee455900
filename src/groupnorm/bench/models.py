"""Whole-model benchmark: ``groupnorm bench --models``, stock models against the same models after
:func:`groupnorm.patch`.

Each workload builds one model with random weights (offline, seeded), copies it, patches the copy, and times both
on the same input tensors in interleaved rounds (:func:`groupnorm.bench.harness.interleaved_rounds`, as the
kernel benchmark does), in NCHW and in channels_last (model and inputs). Before any timing the patched output,
and for a training step the loss and every parameter gradient, must equal stock's within float32 tolerance
(:data:`OUTPUT_RTOL`; gradients: :func:`gradient_rtol`), else the workload is refused with an error and no ratio
is reported.

Workloads (``--models`` takes a comma list of these names, or of a family such as ``vae-decode``):

* ``vae-decode-32``, ``vae-decode-64`` — diffusers ``AutoencoderKL.decode`` (eval, no grad), latents 1x4x32x32 and
  1x4x64x64 (256 and 512 pixel images), Stable Diffusion's VAE config: block_out_channels (128, 256, 512, 512),
  layers_per_block 2, latent_channels 4, norm_num_groups 32 (``--vae small``: (64, 128, 256, 256), one layer per
  block; ``--vae tiny``: (32, 64), one layer, 8 groups);
* ``unet2d`` — diffusers ``UNet2DModel`` forward (eval, no grad), 1x3x64x64, timestep 10, block_out_channels
  (64, 128, 256), layers_per_block 2, attention in the two lower blocks, norm_num_groups 32;
* ``tv-resnet50-gn-train`` — torchvision ``resnet50(weights=None)`` with its BatchNorms converted by
  :func:`groupnorm.convert_norms` to ``torch.nn.GroupNorm(32, C)`` (stock; patching moves them to the fused op),
  one training step: forward, cross-entropy on fixed random labels, backward, SGD step; batch 8 at 224x224;
* ``timm-resnet50-gn-eval``, ``timm-resnet50-gn-train`` — timm ``resnet50_gn`` (``pretrained=False``), forward
  (eval, no grad) and the same training step.

``--quick`` is a short run: 2 rounds, ``--vae small`` at latents 32, the UNet at 32x32, the ResNets at 64x64.

The lead's CPU table (``docs/results/bench-models.md``) comes from::

    groupnorm bench --models --threads 2 --json docs/results/bench-models.json --md docs/results/bench-models.md

and the same on a GPU host with ``--device cuda``. From Python, with a model of your own::

    >>> import torch
    >>> from groupnorm.bench import models
    >>> tiny = models.Workload(
    ...     name="gn-silu", description="GroupNorm + SiLU + conv", mode="eval",
    ...     build=lambda: torch.nn.Sequential(torch.nn.GroupNorm(4, 16), torch.nn.SiLU(), torch.nn.Conv2d(16, 16, 3)),
    ...     make_inputs=lambda gen: (torch.randn(2, 16, 8, 8, generator=gen),),
    ... )
    >>> row = models.run_workload(tiny, "channels_last", rounds=2, min_round_s=0.001)
    >>> row["patch_fused"], row["ratio_median"] > 0, row["error"]
    (1, True, None)
"""

from __future__ import annotations

import copy
import functools
import importlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from groupnorm.bench import harness, op_kinds

MODES = ("eval", "train")
VAE_CONFIGS: dict[str, dict] = {
    # Stable Diffusion's VAE (diffusers' AutoencoderKL defaults, widened as in the SD checkpoints)
    "sd": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
    "small": dict(block_out_channels=(64, 128, 256, 256), layers_per_block=1, norm_num_groups=32),
    "tiny": dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8),
}
# Patched and stock run different kernels (another summation order), and the difference grows through a deep
# network: a float32 tolerance relative to the largest value of each compared tensor, not per element.
# (SD's VAE decoder in channels_last: 5e-5; ResNet-50 outputs: 2e-6.)
OUTPUT_RTOL = 5e-4
ATOL = 1e-6
# A gradient of a randomly initialised deep ReLU network is chaotic in float32: a value that rounds to the other
# side of zero flips a ReLU's mask, and torchvision's GN ResNet-50 (no zero-initialised last norm) then moves
# single gradient tensors by 1-3 % between any two float32 runs, stock against stock with 1 or 2 threads
# included. So the gradient tolerance is GRAD_RTOL or, when larger, NOISE_FACTOR times how far stock's own
# gradients move when its input moves by one float32 rounding step, measured in the same run; a wrong backward
# (relative differences of order one) stays far outside it.
GRAD_RTOL = 1e-3
NOISE_FACTOR = 10.0


class OutputMismatch(RuntimeError):
    """The patched model does not compute what the stock model computes: no ratio may be reported."""


@dataclass(frozen=True)
class Workload:
    """One model and what is timed on it.

    ``build()`` returns the stock model with random weights; ``make_inputs(generator)`` the input tensors;
    ``call(model, *inputs)`` the output tensor (default: ``model(*inputs)``). ``mode="train"`` times a training
    step: forward, cross-entropy against random labels in ``[0, classes)``, backward and an SGD step.
    ``requires`` names the modules it imports (a workload whose module is missing is skipped); ``scope``
    counts only the patch report's entries under that module path (what the timed call runs).
    """

    name: str
    description: str
    mode: str
    build: Callable[[], nn.Module]
    make_inputs: Callable[[torch.Generator], tuple[torch.Tensor, ...]]
    call: Callable[..., torch.Tensor] = field(default=lambda model, *inputs: model(*inputs))
    classes: int = 1000
    requires: tuple[str, ...] = ()
    scope: str = ""
    family: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got mode={self.mode!r} (workload {self.name!r})")


@dataclass(frozen=True)
class Sizes:
    """Model configs and input sizes of the built-in workloads."""

    vae: str = "sd"
    latent_sides: tuple[int, ...] = (32, 64)
    unet_side: int = 64
    image_side: int = 224
    batch: int = 8


FULL = Sizes()
QUICK = Sizes(vae="small", latent_sides=(32,), unet_side=32, image_side=64)


def _vae(config: str) -> nn.Module:
    import diffusers

    cfg = VAE_CONFIGS[config]
    blocks = len(cfg["block_out_channels"])
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        **cfg,
    )


def _unet(side: int) -> nn.Module:
    import diffusers

    return diffusers.UNet2DModel(
        sample_size=side,
        in_channels=3,
        out_channels=3,
        block_out_channels=(64, 128, 256),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=32,
    )


def _tv_resnet50_gn() -> nn.Module:
    import torchvision

    from groupnorm.convert import convert_norms

    return convert_norms(torchvision.models.resnet50(weights=None), lambda c: nn.GroupNorm(32, c))


def _timm_resnet50_gn() -> nn.Module:
    import timm

    return timm.create_model("resnet50_gn", pretrained=False)


def _describe(config: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in config.items())


def builtin_workloads(sizes: Sizes = FULL) -> list[Workload]:
    """The workloads of ``groupnorm bench --models`` at ``sizes`` (see the module docstring).

    Example::

        >>> [w.name for w in builtin_workloads(QUICK)]  # doctest: +NORMALIZE_WHITESPACE
        ['vae-decode-32', 'unet2d', 'tv-resnet50-gn-train', 'timm-resnet50-gn-eval', 'timm-resnet50-gn-train']
    """
    if sizes.vae not in VAE_CONFIGS:
        raise ValueError(f"vae must be one of {', '.join(VAE_CONFIGS)}, got vae={sizes.vae!r}")
    for name in ("unet_side", "image_side", "batch"):
        if getattr(sizes, name) < 1:
            raise ValueError(f"{name} must be a positive integer, got {name}={getattr(sizes, name)!r}")
    b, s = sizes.batch, sizes.image_side
    images = lambda gen: (torch.randn(b, 3, s, s, generator=gen),)
    out: list[Workload] = []
    for side in sizes.latent_sides:
        if side < 1:
            raise ValueError(f"latent sides must be positive integers, got {side!r}")
        out.append(
            Workload(
                name=f"vae-decode-{side}",
                family="vae-decode",
                description=f"diffusers AutoencoderKL decode, {sizes.vae} config ({_describe(VAE_CONFIGS[sizes.vae])}, "
                f"latent_channels 4), latents 1x4x{side}x{side}",
                mode="eval",
                build=lambda: _vae(sizes.vae),
                make_inputs=lambda gen, side=side: (torch.randn(1, 4, side, side, generator=gen),),
                call=lambda model, z: model.decode(z).sample,
                requires=("diffusers",),
                scope="decoder",
            )
        )
    u = sizes.unet_side
    out.append(
        Workload(
            name="unet2d",
            description=f"diffusers UNet2DModel forward, block_out_channels (64, 128, 256), layers_per_block 2, "
            f"attention in the two lower blocks, 32 groups; 1x3x{u}x{u}, timestep 10",
            mode="eval",
            build=lambda: _unet(u),
            make_inputs=lambda gen: (torch.randn(1, 3, u, u, generator=gen),),
            call=lambda model, x: model(x, 10).sample,
            requires=("diffusers",),
        )
    )
    out.append(
        Workload(
            name="tv-resnet50-gn-train",
            description=f"torchvision resnet50, BatchNorm -> nn.GroupNorm(32) by convert_norms; training step "
            f"(SGD), {b}x3x{s}x{s}",
            mode="train",
            build=_tv_resnet50_gn,
            make_inputs=images,
            requires=("torchvision",),
        )
    )
    for mode, what in (("eval", "forward"), ("train", "training step (SGD)")):
        out.append(
            Workload(
                name=f"timm-resnet50-gn-{mode}",
                family="timm-resnet50-gn",
                description=f"timm resnet50_gn {what}, {b}x3x{s}x{s}",
                mode=mode,
                build=_timm_resnet50_gn,
                make_inputs=images,
                requires=("timm",),
            )
        )
    return out


def select(workloads: Sequence[Workload], names: Sequence[str] | None) -> list[Workload]:
    """The workloads named (by name or family) in ``names``, in ``workloads``' order; all for None or ``all``."""
    if not names or list(names) == ["all"]:
        return list(workloads)
    known = {w.name for w in workloads} | {w.family for w in workloads if w.family}
    for n in names:
        if n not in known:
            raise ValueError(f"--models: unknown model {n!r}; choose from {', '.join(sorted(known))}")
    return [w for w in workloads if w.name in names or (w.family and w.family in names)]


def missing_requirement(workload: Workload) -> str | None:
    """Why ``workload`` cannot run here (a module it needs does not import), or None."""
    for module in workload.requires:
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f"{module} is not installed ({error})"
    return None


def _layout_model(model: nn.Module, layout: str) -> nn.Module:
    if layout == "channels_last":
        return model.to(memory_format=torch.channels_last)
    if layout != "nchw":
        raise ValueError(f"layout must be one of {harness.LAYOUTS}, got layout={layout!r}")
    return model


def _compare(what: str, stock: torch.Tensor, patched: torch.Tensor, rtol: float) -> float:
    """Max |patched - stock|; raises :class:`OutputMismatch` past ``ATOL + rtol * max |stock|``."""
    if patched.shape != stock.shape:
        raise OutputMismatch(f"patched {what} has shape {tuple(patched.shape)}, stock {tuple(stock.shape)}")
    stock, patched = stock.detach().float(), patched.detach().float()
    if not torch.isfinite(stock).all():
        raise OutputMismatch(f"stock {what} is not finite: nothing to compare the patched model against")
    diff = (patched - stock).abs().max().item() if stock.numel() else 0.0
    scale = stock.abs().max().item() if stock.numel() else 0.0
    limit = ATOL + rtol * scale
    if not diff <= limit:  # also catches a NaN difference
        raise OutputMismatch(
            f"patched {what} differs from stock: max |patched - stock| = {diff:.3g} > {limit:.3g} "
            f"(float32 tolerance: {ATOL:g} + {rtol:g} x max |stock| {scale:.3g})"
        )
    return diff


class _Run:
    """One model on its device, in its layout: what the check and the timing call."""

    def __init__(self, workload: Workload, model: nn.Module, inputs: tuple, labels: torch.Tensor):
        self.workload, self.model, self.inputs, self.labels = workload, model, inputs, labels
        if workload.mode == "train":
            model.train()
            self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        else:
            model.eval()

    def loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.workload.call(self.model, *self.inputs)
        return out, F.cross_entropy(out.flatten(1).float(), self.labels)

    def outputs(self, nudge: bool = False) -> dict[str, torch.Tensor]:
        """What must match: the output; in training also the loss and each parameter's gradient. ``nudge``
        moves the floating-point inputs by one float32 rounding step first (for :func:`gradient_rtol`)."""
        if self.workload.mode == "eval":
            with torch.no_grad():
                return {"output": self.workload.call(self.model, *self.inputs)}
        self.model.zero_grad(set_to_none=True)
        saved = self.inputs
        if nudge:
            self.inputs = tuple(t * (1 + 2**-23) if t.is_floating_point() else t for t in saved)
        try:
            out, loss = self.loss()
        finally:
            self.inputs = saved
        loss.backward()
        grads = {f"gradient of {n}": p.grad for n, p in self.model.named_parameters() if p.grad is not None}
        return {"output": out, "loss": loss, **grads}

    def step(self) -> object:
        """One timed call."""
        if self.workload.mode == "eval":
            with torch.no_grad():
                return self.workload.call(self.model, *self.inputs)
        self.optimizer.zero_grad(set_to_none=True)
        _, loss = self.loss()
        loss.backward()
        self.optimizer.step()
        return loss


def _align_gradients(stock: dict[str, torch.Tensor], patched: dict[str, torch.Tensor]) -> dict:
    """``patched`` with its gradients under stock's parameter names: by name where the names agree (what
    :func:`groupnorm.patch` keeps), else in parameter order when the counts agree (a patch that wraps the model)."""
    grad_keys = lambda d: [k for k in d if k.startswith("gradient of ")]
    ks, kp = grad_keys(stock), grad_keys(patched)
    if set(ks) == set(kp) or len(ks) != len(kp):
        return patched
    renamed = {k: v for k, v in patched.items() if k not in kp}
    renamed.update({k: patched[p] for k, p in zip(ks, kp)})
    return renamed


def gradient_rtol(stock: dict[str, torch.Tensor], nudged: dict[str, torch.Tensor]) -> tuple[float, float]:
    """``(noise, rtol)``: the largest relative change of a gradient of stock between ``stock`` and ``nudged``
    (stock again, its input moved by one float32 rounding step), and the tolerance for the patched gradients:
    ``max(GRAD_RTOL, NOISE_FACTOR * noise)``."""
    noise = 0.0
    for what, s in stock.items():
        if what.startswith("gradient of ") and s.numel():
            scale = max(s.detach().abs().max().item(), ATOL)
            noise = max(noise, (nudged[what].detach() - s.detach()).abs().max().item() / scale)
    return noise, max(GRAD_RTOL, NOISE_FACTOR * noise)


def check_outputs(
    stock: dict[str, torch.Tensor], patched: dict[str, torch.Tensor], grad_rtol: float = GRAD_RTOL
) -> float:
    """Raise :class:`OutputMismatch` unless every tensor of ``patched`` equals ``stock``'s within float32
    tolerance (``OUTPUT_RTOL``; ``grad_rtol`` for gradients, see :func:`gradient_rtol`), each relative to the
    largest value of its stock tensor; returns the largest such relative difference."""
    if set(stock) != set(patched):
        raise OutputMismatch(
            f"patched model has other tensors to compare than stock: only in stock "
            f"{sorted(set(stock) - set(patched))[:3]}, only in patched {sorted(set(patched) - set(stock))[:3]}"
        )
    worst = 0.0
    for what, s in stock.items():
        rtol = grad_rtol if what.startswith("gradient of ") else OUTPUT_RTOL
        diff = _compare(what, s, patched[what], rtol)
        worst = max(worst, diff / max(s.detach().abs().max().item(), ATOL) if s.numel() else 0.0)
    return worst


class _NoTF32:
    """On CUDA the correctness check runs convolutions and matmuls in full float32 (TF32 would round the small
    differences of the two models' GroupNorms into differences past float32 tolerance); timing keeps the default."""

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def _patch_counts(report, scope: str) -> dict:
    inside = lambda path: not scope or path == scope or path.startswith(scope + ".")
    fused = [f for f in report.fused if inside(f[0])]
    acts: dict[str, int] = {}
    for _, _, name, _ in fused:
        acts[name] = acts.get(name, 0) + 1
    return dict(
        patch_swapped=sum(1 for p in report.swapped if inside(p)),
        patch_fused=len(fused),
        patch_left=sum(1 for p, _ in report.left if inside(p)),
        patch_fused_activations=acts,
        patch_traced=report.traced,
        patch_scope=scope or None,
    )


def _blank_row(workload: Workload, layout: str, device: str, rounds: int) -> dict:
    return dict(
        model=workload.name,
        description=workload.description,
        mode=workload.mode,
        layout=layout,
        device=device,
        rounds=rounds,
        stock_ms=None,
        patched_ms=None,
        ratio_median=None,
        ratio_min=None,
        ratio_max=None,
        skipped=None,
        error=None,
    )


def run_workload(
    workload: Workload,
    layout: str,
    *,
    device: str = "cpu",
    rounds: int = 5,
    min_round_s: float = 0.0,
    patch: Callable[[nn.Module], tuple[nn.Module, object]] | None = None,
    seed: int = 0,
    profile_calls: int = 0,
) -> dict:
    """Check, then time ``workload`` stock and patched in ``layout``; one record.

    ``patch`` (default :func:`groupnorm.patch` with ``return_report=True``) turns a copy of the stock model into
    ``(patched model, report)``. Ratios are stock time / patched time (above 1: the patched model is faster):
    ``ratio_median`` is the median over rounds of the per-round ratio, ``ratio_min``/``ratio_max`` its spread.
    ``profile_calls`` > 0 profiles that many calls of each model after the timing and adds ``stock_kinds_ms`` /
    ``patched_kinds_ms``: milliseconds per call by operator kind (:mod:`groupnorm.bench.op_kinds`). Raises
    :class:`OutputMismatch` when the patched model's output differs, and ``ValueError`` for bad arguments.
    """
    if layout not in harness.LAYOUTS:
        raise ValueError(f"layout must be one of {harness.LAYOUTS}, got layout={layout!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got rounds={rounds!r}")
    if patch is None:
        from groupnorm.patch import patch as patch_model

        patch = functools.partial(patch_model, return_report=True)
    started = time.perf_counter()
    row = _blank_row(workload, layout, device, rounds)
    torch.manual_seed(seed)  # the same random weights for every layout and run
    stock_model = workload.build()
    patched_model, report = patch(copy.deepcopy(stock_model))
    row.update(_patch_counts(report, workload.scope))
    gen = torch.Generator().manual_seed(seed)
    inputs = tuple(harness.to_layout(t, layout).to(device) for t in workload.make_inputs(gen))
    row["inputs"] = [list(t.shape) for t in inputs]
    labels = torch.randint(workload.classes, (inputs[0].shape[0],), generator=gen).to(device)
    runs = {
        name: _Run(workload, _layout_model(model.to(device), layout), inputs, labels)
        for name, model in (("stock", stock_model), ("patched", patched_model))
    }

    with _NoTF32():
        expected = runs["stock"].outputs()
        got = _align_gradients(expected, runs["patched"].outputs())
        grad_rtol = GRAD_RTOL
        if workload.mode == "train":
            row["grad_noise"], grad_rtol = gradient_rtol(expected, runs["stock"].outputs(nudge=True))
            row["grad_rtol"] = grad_rtol
    try:
        row["max_rel_diff"] = check_outputs(expected, got, grad_rtol)
    except OutputMismatch as error:
        raise OutputMismatch(f"{workload.name} ({layout}): {error}; no ratio reported") from None
    del expected, got

    clock = harness.Clock(device)
    runners = {name: run.step for name, run in runs.items()}
    # the check above ran each model once: that was the warm-up
    iters = {name: harness._calibrate(clock, fn, min_round_s, warm_up=False) for name, fn in runners.items()}
    times, cpu_times = harness.interleaved_rounds(runners, iters, clock, rounds)
    ratios = [s / p for s, p in zip(times["stock"], times["patched"])]
    row.update(
        stock_ms=round(statistics.median(times["stock"]) * 1e3, 3),
        patched_ms=round(statistics.median(times["patched"]) * 1e3, 3),
        stock_min_ms=round(min(times["stock"]) * 1e3, 3),
        patched_min_ms=round(min(times["patched"]) * 1e3, 3),
        ratio_median=round(statistics.median(ratios), 3),
        ratio_min=round(min(ratios), 3),
        ratio_max=round(max(ratios), 3),
        ratio_of_medians=round(statistics.median(times["stock"]) / statistics.median(times["patched"]), 3),
        iters_per_round=iters,
    )
    if cpu_times["stock"]:
        row["stock_cpu_ms"] = round(statistics.median(cpu_times["stock"]) * 1e3, 3)
        row["patched_cpu_ms"] = round(statistics.median(cpu_times["patched"]) * 1e3, 3)
    if profile_calls:
        for name, fn in runners.items():
            seconds = op_kinds.self_time_by_kind(fn, calls=profile_calls)  # host time: a CPU measure
            row[f"{name}_kinds_ms"] = {kind: round(v * 1e3, 3) for kind, v in seconds.items()}
    row["row_s"] = round(time.perf_counter() - started, 1)
    return row


def run_all(
    workloads: Sequence[Workload],
    layouts: Sequence[str] = harness.LAYOUTS,
    *,
    device: str = "cpu",
    rounds: int = 5,
    min_round_s: float = 0.0,
    patch: Callable[[nn.Module], tuple[nn.Module, object]] | None = None,
    on_row: Callable[[dict], None] | None = None,
    profile_calls: int = 0,
) -> list[dict]:
    """:func:`run_workload` for every workload and layout. A workload whose module is missing gets a row with
    ``skipped`` set; one whose patched output differs a row with ``error`` set and no timings (the others still
    run). ``on_row`` sees each row as it is done."""
    rows = []
    for workload in workloads:
        missing = missing_requirement(workload)
        for layout in layouts:
            if missing:
                row = _blank_row(workload, layout, device, rounds)
                row["skipped"] = missing
            else:
                try:
                    row = run_workload(
                        workload,
                        layout,
                        device=device,
                        rounds=rounds,
                        min_round_s=min_round_s,
                        patch=patch,
                        profile_calls=profile_calls,
                    )
                except OutputMismatch as error:
                    row = _blank_row(workload, layout, device, rounds)
                    row["error"] = str(error)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows
