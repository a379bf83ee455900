"""The conformance suite: what every implementation of the op must compute, checked against the float64
reference.

A case is a named shape in a layout, a precision (input and parameter dtypes; statistics are float32) and
an epilogue (activation, affine or not, residual, per-sample scale and shift). :func:`check_case` runs an
implementation's forward and backward on it and checks

- y, mean and rstd: shapes, dtypes, y in x's memory format, values within :data:`TOLERANCES` of the reference,
  and y no worse than torch's own float32 ``group_norm`` (rounded once) where torch takes the shape;
- dx, dweight, dbias, dresidual, dscale, dshift: each in its input's dtype and layout, empty where the input is
  absent, within :func:`gradient_tolerance` of autograd through the reference.

An implementation is any pair of callables with the signatures of ``torch.ops.groupnorm.forward`` and
``backward`` (a registry ``Implementation``'s, a kernel module's, a launcher's).

Example::

    >>> from groupnorm.ops import torch_impl
    >>> cases = conformance_cases(combinations="each", max_numel=256)
    >>> run_conformance(torch_impl.forward, torch_impl.backward, cases)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from groupnorm.activations import apply_activation
from groupnorm.testing.compare import assert_close_verbose, assert_no_worse_than_torch
from groupnorm.testing.reference_grads import GRADIENT_NAMES, reference_statistics, reference_with_grads
from groupnorm.testing.shapes import NamedShape, make_input, shape_layout_cases, torch_group_norm_accepts
from groupnorm.testing.tolerances import TOLERANCES, gradient_tolerance

ForwardFn = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
BackwardFn = Callable[..., tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class Precision:
    """The input's dtype and the parameters' (weight, bias, scale, shift)."""

    name: str
    dtype: torch.dtype
    param_dtype: torch.dtype


PRECISIONS: tuple[Precision, ...] = (
    Precision("fp32", torch.float32, torch.float32),
    Precision("fp16", torch.float16, torch.float16),
    Precision("bf16", torch.bfloat16, torch.bfloat16),
    # mixed precision as autocast leaves it: 2-byte activations, float32 parameters
    Precision("fp16-fp32params", torch.float16, torch.float32),
    Precision("bf16-fp32params", torch.bfloat16, torch.float32),
)


@dataclass(frozen=True)
class Epilogue:
    """Which of the op's optional inputs a case passes, and its activation."""

    name: str
    activation: str = "none"
    weight: bool = True
    bias: bool = True
    residual: bool = False
    scale: bool = False
    shift: bool = False


EPILOGUES: tuple[Epilogue, ...] = (
    Epilogue("affine"),
    Epilogue("no-affine", weight=False, bias=False),
    Epilogue("weight-only", bias=False),
    Epilogue("residual+scale+shift", residual=True, scale=True, shift=True),
    Epilogue("silu", "silu"),
    Epilogue("relu+residual", "relu", residual=True),
    Epilogue("silu+residual+scale+shift", "silu", residual=True, scale=True, shift=True),
    Epilogue("gelu+scale+shift", "gelu", scale=True, shift=True),
    Epilogue("gelu_tanh+residual", "gelu_tanh", residual=True),
    # each per-sample input alone, without the affine parameters in front of it
    Epilogue("no-affine-silu+scale", "silu", weight=False, bias=False, scale=True),
    Epilogue("no-affine-gelu_tanh+shift", "gelu_tanh", weight=False, bias=False, shift=True),
)


@dataclass(frozen=True)
class ConformanceCase:
    """One call of the suite: a named shape in a layout, a precision and an epilogue."""

    shape: NamedShape
    layout: str
    precision: Precision
    epilogue: Epilogue
    eps: float = 1e-5

    def __str__(self) -> str:
        return f"{self.shape}-{self.layout}-{self.precision.name}-{self.epilogue.name}"

    @property
    def numel(self) -> int:
        """The number of elements of x."""
        return torch.Size(self.shape.shape).numel()

    def inputs(self) -> dict[str, torch.Tensor | None]:
        """Seeded CPU tensors: x (offset from zero, so the statistics must not cancel), the parameters the
        epilogue names, and grad_y; residual and grad_y in x's layout."""
        shape, dtype, param_dtype = self.shape.shape, self.precision.dtype, self.precision.param_dtype
        n, c = shape[:2]
        gen = torch.Generator().manual_seed(1)

        def param(size: tuple[int, ...], wanted: bool, factor: float = 1.0) -> torch.Tensor | None:
            values = factor * torch.randn(
                size, generator=gen
            )  # drawn even when unused: same values in every epilogue
            return values.to(param_dtype) if wanted else None

        epi = self.epilogue
        return {
            "x": make_input(shape, dtype, self.layout, seed=0, scale=2.0, offset=3.0),
            "weight": param((c,), epi.weight),
            "bias": param((c,), epi.bias),
            "residual": make_input(shape, dtype, self.layout, seed=2) if epi.residual else None,
            "scale": param((n, c), epi.scale, 0.5),
            "shift": param((n, c), epi.shift),
            "grad_y": make_input(shape, dtype, self.layout, seed=3),
        }


def conformance_cases(
    *,
    combinations: str = "pairs",
    max_numel: int | None = None,
    shapes: Sequence[tuple[NamedShape, str]] | None = None,
    precisions: Sequence[Precision] = PRECISIONS,
    epilogues: Sequence[Epilogue] = EPILOGUES,
    rotate: int = 0,
) -> list[ConformanceCase]:
    """Cases over (shape and layout) x precision x epilogue.

    ``combinations``: ``"all"`` is the full product; ``"pairs"`` has every pair of values of any two of the
    three factors in some case (the value of the third cycles), so each shape meets each epilogue and each
    precision, and each precision each epilogue; ``"each"`` has every value of every factor at least once (for
    slow runners such as Triton's interpreter), and ``rotate`` starts its precision and epilogue cycles that many
    places on, so that several such runs (one per planner path, say) meet different combinations.
    ``shapes`` defaults to :func:`shape_layout_cases`; ``max_numel`` leaves out larger inputs.
    """
    shapes = [
        (named, layout)
        for named, layout in (shape_layout_cases() if shapes is None else shapes)
        if max_numel is None or torch.Size(named.shape).numel() <= max_numel
    ]
    if combinations == "all":
        return [
            ConformanceCase(named, layout, precision, epilogue)
            for (named, layout), precision, epilogue in itertools.product(shapes, precisions, epilogues)
        ]
    if combinations == "pairs":
        # precision (i + j) mod P over the shape x epilogue grid: a fixed shape sees every precision along its
        # epilogues, a fixed epilogue every precision along its shapes, when both outnumber the precisions
        if min(len(shapes), len(epilogues)) < len(precisions):
            raise ValueError("pairs need at least as many shapes and epilogues as precisions")
        return [
            ConformanceCase(named, layout, precisions[(i + j) % len(precisions)], epilogue)
            for i, (named, layout) in enumerate(shapes)
            for j, epilogue in enumerate(epilogues)
        ]
    if combinations == "each":
        count = max(len(shapes), len(precisions), len(epilogues))
        return [
            ConformanceCase(
                *shapes[k % len(shapes)],
                precisions[(k + rotate) % len(precisions)],
                epilogues[(k + rotate) % len(epilogues)],
            )
            for k in range(count)
        ]
    raise ValueError(f"combinations must be 'all', 'pairs' or 'each', got combinations={combinations!r}")


def _torch_float32(inputs: dict[str, torch.Tensor | None], case: ConformanceCase) -> torch.Tensor:
    """torch's own ops in float32, rounded once to the input's dtype: the error a careful user gets."""

    def f32(name: str) -> torch.Tensor | None:
        t = inputs[name]
        return None if t is None else t.float()

    x = inputs["x"]
    view = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
    out = F.group_norm(x.float(), case.shape.num_groups, f32("weight"), f32("bias"), case.eps)
    if inputs["scale"] is not None:
        out = out * (1.0 + f32("scale").reshape(view))
    if inputs["shift"] is not None:
        out = out + f32("shift").reshape(view)
    if inputs["residual"] is not None:
        out = out + f32("residual")
    return apply_activation(out, case.epilogue.activation).to(x.dtype)


def _require(condition: bool, message: str) -> None:
    # not `assert`: the suite must check under `python -O` too
    if not condition:
        raise AssertionError(message)


def _reference(
    inputs: dict[str, torch.Tensor | None], case: ConformanceCase
) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
    return reference_with_grads(
        inputs["x"],
        case.shape.num_groups,
        inputs["weight"],
        inputs["bias"],
        case.eps,
        activation=case.epilogue.activation,
        residual=inputs["residual"],
        scale=inputs["scale"],
        shift=inputs["shift"],
        grad_y=inputs["grad_y"],
    )


def _check_forward(
    out: tuple[torch.Tensor, ...],
    expected: torch.Tensor,
    inputs: dict[str, torch.Tensor | None],
    case: ConformanceCase,
    label: str,
) -> None:
    x, groups = inputs["x"], case.shape.num_groups
    _require(len(out) == 3, f"{label}: forward returned {len(out)} tensors, not (y, mean, rstd)")
    y, mean, rstd = (t.detach().cpu() for t in out)
    _require(y.shape == x.shape and y.dtype == x.dtype, f"{label}: y is {y.dtype} {tuple(y.shape)}")
    _require(y.stride() == x.stride(), f"{label}: y has strides {y.stride()}, x {x.stride()}")
    stats_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # the op's accumulation dtype
    for name, stat in (("mean", mean), ("rstd", rstd)):
        _require(
            stat.shape == (x.shape[0], groups) and stat.dtype == stats_dtype,
            f"{label}: {name} is {stat.dtype} {tuple(stat.shape)}, want {stats_dtype} {(x.shape[0], groups)}",
        )

    atol, rtol = TOLERANCES[x.dtype]
    assert_close_verbose(y, expected, atol=atol, rtol=rtol, name=f"{label}: y")
    if torch_group_norm_accepts(x.shape):
        theirs = _torch_float32(inputs, case)
        assert_no_worse_than_torch(y, theirs, expected, atol=atol, name=f"{label}: y vs torch")

    ref_mean, ref_rstd = reference_statistics(x, groups, case.eps)
    stats_atol, stats_rtol = TOLERANCES[stats_dtype]
    assert_close_verbose(mean, ref_mean, atol=stats_atol, rtol=stats_rtol, name=f"{label}: mean")
    assert_close_verbose(rstd, ref_rstd, atol=stats_atol, rtol=stats_rtol, name=f"{label}: rstd")


def _check_backward(
    grads: tuple[torch.Tensor, ...],
    expected: tuple[torch.Tensor | None, ...],
    ref_rstd: torch.Tensor,
    inputs: dict[str, torch.Tensor | None],
    label: str,
) -> None:
    owners = [inputs[k] for k in ("x", "weight", "bias", "residual", "scale", "shift")]
    _require(len(grads) == len(GRADIENT_NAMES), f"{label}: backward returned {len(grads)} tensors, not 6")
    for name, got, want, owner in zip(GRADIENT_NAMES, grads, expected, owners):
        got = got.detach().cpu()
        if owner is None:
            _require(got.numel() == 0, f"{label}: {name} must be empty without its input")
            continue
        _require(
            got.shape == owner.shape and got.dtype == owner.dtype,
            f"{label}: {name} is {got.dtype} {tuple(got.shape)}, its input {owner.dtype} {tuple(owner.shape)}",
        )
        _require(
            got.stride() == owner.stride(),
            f"{label}: {name} has strides {got.stride()}, its input's {owner.stride()}",
        )
        atol, rtol = gradient_tolerance(got.dtype, want, rstd=ref_rstd if name == "dx" else None)
        assert_close_verbose(got, want, atol=atol, rtol=rtol, name=f"{label}: {name}")


def check_case(
    forward: ForwardFn,
    backward: BackwardFn | None,
    case: ConformanceCase,
    *,
    device: torch.device | str | None = None,
    name: str = "",
) -> None:
    """Run ``forward`` then ``backward`` (with its own mean and rstd, every gradient asked for) on ``case``,
    with the inputs on ``device`` (CPU by default); raise ``AssertionError`` naming the case on any miss.

    ``backward=None`` checks the forward alone (for runners too slow for both on large inputs)."""
    inputs = case.inputs()
    on = {k: None if t is None else t.to(device or "cpu") for k, t in inputs.items()}
    label = f"{name} {case}".strip()
    groups, act = case.shape.num_groups, case.epilogue.activation
    extras = (on["residual"], on["scale"], on["shift"])
    expected_y, expected_grads = _reference(inputs, case)

    out = forward(on["x"], on["weight"], on["bias"], groups, case.eps, act, *extras)
    _check_forward(out, expected_y, inputs, case, label)
    if backward is None:
        return
    _, mean, rstd = out
    mask = [True] * len(GRADIENT_NAMES)
    grads = backward(on["grad_y"], on["x"], on["weight"], on["bias"], mean, rstd, groups, act, *extras, mask)
    _check_backward(
        grads, expected_grads, reference_statistics(inputs["x"], groups, case.eps)[1], inputs, label
    )


def run_conformance(
    forward: ForwardFn,
    backward: BackwardFn,
    cases: Sequence[ConformanceCase] | None = None,
    *,
    device: torch.device | str | None = None,
    name: str = "",
) -> None:
    """:func:`check_case` on every case (default: :func:`conformance_cases`); one ``AssertionError`` at the end
    lists every case that failed, so a run against a build variant shows all its misses at once."""
    failures = []
    for case in conformance_cases() if cases is None else cases:
        try:
            check_case(forward, backward, case, device=device, name=name)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        shown = "\n".join(failures[:20])
        more = f"\n... and {len(failures) - 20} more" if len(failures) > 20 else ""
        raise AssertionError(f"{len(failures)} conformance case(s) failed:\n{shown}{more}")
