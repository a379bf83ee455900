"""ONNX export: each GroupNorm becomes one standard ``GroupNormalization`` node (opset 21).

``torch.onnx.export(..., dynamo=True)`` sees the registered op ``groupnorm::forward`` as one call; the translation
here writes it as ``GroupNormalization`` (opset 21: per-channel scale and bias, ``stash_type`` = float, so
low-precision inputs are normalized in float32) followed by the epilogue as standard nodes: ``Mul``/``Add`` for
scale and shift, ``Add`` for the residual, and ``Relu``, ``x * Sigmoid(x)``, or ``Gelu`` (exact or tanh) for the
activation.

For opsets below 21 — where ``GroupNormalization`` is either missing or the deprecated opset-18 form with
per-group scale — the same call is written as a decomposition in standard nodes: cast to float, reshape to
(N, G, -1), ``ReduceMean`` for the mean and the biased variance, ``(x - mean) / Sqrt(var + eps)``, reshape back,
cast back, then the per-channel affine and the epilogue (``Gelu`` written with ``Erf``/``Tanh`` below opset 20).
The dynamo exporter targets opset 18 and later.

The statistics outputs (mean, rstd) are emitted too; exported models do not use them, and the exporter's optimizer
removes them.

Example::

    >>> import torch, groupnorm
    >>> from groupnorm.export import to_onnx
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3), groupnorm.GroupNorm(8, 32, activation="silu"))
    >>> program = to_onnx(model, (torch.randn(1, 3, 16, 16),), "model.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

import groupnorm.ops  # noqa: F401  (registers torch.ops.groupnorm.forward)

GROUP_NORMALIZATION_OPSET = 21
MIN_OPSET = 18
_FLOAT = 1  # onnx.TensorProto.FLOAT


def _opset_module(opset: int):
    import onnxscript

    module = getattr(onnxscript, f"opset{opset}", None)
    if module is None:
        raise ValueError(f"opset={opset} is not available in the installed onnxscript")
    return module


def _channel_broadcast(op, t, rank: int, leading_batch: bool):
    """(C,) -> (1, C, 1, ...) or (N, C) -> (N, C, 1, ...) for broadcasting against a rank-``rank`` tensor."""
    axes = list(range(2, rank)) if leading_batch else [0, *range(2, rank)]
    if not axes:
        return t
    return op.Unsqueeze(t, op.Constant(value_ints=axes))


def _statistics(op, x, num_groups: int, eps: float):
    """Per-(sample, group) mean and 1/sqrt(var + eps) in float32, as (N, G) and as (N, G, 1) for reuse."""
    grouped = op.Reshape(op.Cast(x, to=_FLOAT), op.Constant(value_ints=[0, num_groups, -1]))
    axes = op.Constant(value_ints=[2])
    mean = op.ReduceMean(grouped, axes, keepdims=1)
    centered = op.Sub(grouped, mean)
    var = op.ReduceMean(op.Mul(centered, centered), axes, keepdims=1)
    rstd = op.Reciprocal(op.Sqrt(op.Add(var, op.Constant(value_float=float(eps)))))
    return grouped, centered, mean, rstd, axes


GELU_OPSET = 20  # Gelu exists from opset 20; below it, write it out


def _gelu_decomposed(op, y, approximate: str):
    half, one = op.CastLike(op.Constant(value_float=0.5), y), op.CastLike(op.Constant(value_float=1.0), y)
    if approximate == "tanh":
        coef = op.CastLike(op.Constant(value_float=0.044715), y)
        sqrt_2_over_pi = op.CastLike(op.Constant(value_float=math.sqrt(2.0 / math.pi)), y)
        inner = op.Mul(sqrt_2_over_pi, op.Add(y, op.Mul(coef, op.Mul(y, op.Mul(y, y)))))
        return op.Mul(op.Mul(half, y), op.Add(one, op.Tanh(inner)))
    inv_sqrt_2 = op.CastLike(op.Constant(value_float=1.0 / math.sqrt(2.0)), y)
    return op.Mul(op.Mul(half, y), op.Add(one, op.Erf(op.Mul(y, inv_sqrt_2))))


def _apply_activation(op, y, activation: str, opset: int):
    if activation in ("gelu", "gelu_tanh") and opset < GELU_OPSET:
        return _gelu_decomposed(op, y, "tanh" if activation == "gelu_tanh" else "none")
    if activation == "none":
        return y
    if activation == "relu":
        return op.Relu(y)
    if activation == "silu":
        return op.Mul(y, op.Sigmoid(y))
    if activation == "gelu":
        return op.Gelu(y, approximate="none")
    if activation == "gelu_tanh":
        return op.Gelu(y, approximate="tanh")
    raise ValueError(f"activation={activation!r} has no ONNX translation")


def _epilogue(op, y, residual, scale, shift, activation: str, rank: int, opset: int):
    if scale is not None:
        one = op.CastLike(op.Constant(value_float=1.0), y)
        y = op.Mul(y, _channel_broadcast(op, op.Add(op.CastLike(scale, y), one), rank, leading_batch=True))
    if shift is not None:
        y = op.Add(y, _channel_broadcast(op, op.CastLike(shift, y), rank, leading_batch=True))
    if residual is not None:
        y = op.Add(y, residual)
    return _apply_activation(op, y, activation, opset)


def _per_channel(op, t, x, value: float, num_channels: int):
    """The affine parameter ``t`` in x's dtype, or a constant (C,) of ``value`` when it is absent."""
    if t is None:
        return op.CastLike(op.Constant(value_floats=[value] * num_channels), x)
    return op.CastLike(t, x)


def make_translation(opset: int = GROUP_NORMALIZATION_OPSET) -> Callable[..., Any]:
    """The onnxscript function that writes ``groupnorm::forward`` in the given opset."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset={opset} is below {MIN_OPSET}, the oldest the dynamo ONNX exporter writes")
    op = _opset_module(opset)

    def groupnorm_forward(
        x, weight, bias, num_groups: int, eps: float, activation: str, residual, scale, shift
    ):
        rank = len(x.shape)
        num_channels = x.shape[1]
        if not isinstance(num_channels, int):
            raise ValueError(f"ONNX export needs a static channel count, got C={num_channels}")
        gamma = _per_channel(op, weight, x, 1.0, num_channels)
        beta = _per_channel(op, bias, x, 0.0, num_channels)
        grouped, centered, mean, rstd, _axes = _statistics(op, x, num_groups, eps)
        if opset >= GROUP_NORMALIZATION_OPSET:
            y = op.GroupNormalization(
                x, gamma, beta, epsilon=float(eps), num_groups=num_groups, stash_type=_FLOAT
            )
        else:
            normalized = op.Reshape(op.Mul(centered, rstd), op.Shape(x))
            y = op.CastLike(normalized, x)
            y = op.Add(
                op.Mul(y, _channel_broadcast(op, gamma, rank, leading_batch=False)),
                _channel_broadcast(op, beta, rank, leading_batch=False),
            )
        y = _epilogue(op, y, residual, scale, shift, activation, rank, opset)
        stats_shape = op.Constant(value_ints=[0, num_groups])
        return y, op.Reshape(mean, stats_shape), op.Reshape(rstd, stats_shape)

    return groupnorm_forward


def translation_table(opset: int = GROUP_NORMALIZATION_OPSET) -> dict:
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``.

    Example::

        torch.onnx.export(model, args, "m.onnx", dynamo=True, opset_version=21,
                          custom_translation_table=groupnorm.export.translation_table(21))
    """
    return {torch.ops.groupnorm.forward.default: make_translation(opset)}


def to_onnx(
    model: torch.nn.Module,
    example_inputs: Sequence[Any],
    path: str | os.PathLike[str] | None,
    opset: int = GROUP_NORMALIZATION_OPSET,
    *,
    dynamic_batch: bool = True,
    **export_kwargs: Any,
):
    """Export ``model`` to ONNX with every GroupNorm as a ``GroupNormalization`` node (a decomposition below opset
    21) and return the ``torch.onnx.ONNXProgram``; ``path=None`` skips writing a file.

    ``dynamic_batch=True`` makes the first dimension of every tensor input dynamic. Other keyword arguments go to
    ``torch.onnx.export``.
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    if dynamic_batch and "dynamic_shapes" not in export_kwargs:
        batch = torch.export.Dim("batch")
        export_kwargs["dynamic_shapes"] = tuple(
            {0: batch} if isinstance(t, torch.Tensor) and t.dim() > 0 else None for t in example_inputs
        )
    program = torch.onnx.export(
        model,
        example_inputs,
        dynamo=True,
        opset_version=opset,
        custom_translation_table=translation_table(opset),
        **export_kwargs,
    )
    if path is not None:
        program.save(os.fspath(path))
    return program
