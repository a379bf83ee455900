"""Where a call's time goes: self CPU time of a profiled call, summed by operator kind.

A norm layer's share of a model bounds what any norm kernel can gain there (a model whose norms take 9 % of its
time gets at most 1/(1 - 0.09 (1 - 1/s)) from a norm kernel s times faster), so the whole-model benchmark and the
training-step profile both report it. Operators are matched by fragments of the names torch.profiler gives them,
first match wins; what matches none is ``other ops``, and wall time not spent in any operator is ``python``.

Example::

    >>> import torch
    >>> conv, norm = torch.nn.Conv2d(8, 8, 3), torch.nn.GroupNorm(2, 8)
    >>> x = torch.randn(2, 8, 16, 16)
    >>> seconds = self_time_by_kind(lambda: norm(conv(x)), calls=2)
    >>> sorted(seconds) == sorted([*kind_names(MODEL_KINDS)])
    True
    >>> seconds["conv"] > 0 and seconds["norm"] > 0
    True
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence

Kinds = Sequence[tuple[str, Sequence[str]]]

NORM_FRAGMENTS = ("group_norm", "groupnorm::", "batch_norm", "layer_norm", "var_mean", "rsqrt")
# The kinds of an inference or training call of a whole model (diffusers VAEs and UNets, ResNets).
# "attention" comes before anything an "add" could match (addmm, baddbmm are attention's matrix products here).
MODEL_KINDS: Kinds = (
    ("conv", ("conv", "mkldnn_convolution")),
    ("norm", NORM_FRAGMENTS),
    ("activation", ("silu", "relu", "gelu", "sigmoid")),
    ("attention", ("scaled_dot_product", "attention", "bmm", "addmm", "matmul", "aten::mm", "softmax")),
    ("resample", ("upsample", "interpolate")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("optimizer", ("sgd", "_foreach", "optimizer")),
)
# The kinds of a repro training step (a small ResNet): activations stay in "other ops" with the elementwise work.
STEP_KINDS: Kinds = (
    ("conv", ("conv", "mkldnn_convolution")),
    ("norm", NORM_FRAGMENTS),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("optimizer", ("sgd", "_foreach", "optimizer")),
)
OTHER, PYTHON = "other ops", "python"


def kind_names(kinds: Kinds) -> list[str]:
    """Column names, in order: the kinds, then ``other ops`` and ``python``."""
    return [name for name, _ in kinds] + [OTHER, PYTHON]


def classify(op_name: str, kinds: Kinds) -> str:
    """The kind of one operator name (``OTHER`` when no fragment matches)."""
    name = op_name.lower()
    return next((kind for kind, fragments in kinds if any(f in name for f in fragments)), OTHER)


def self_time_by_kind(
    fn: Callable[[], object], calls: int = 3, kinds: Kinds = MODEL_KINDS
) -> dict[str, float]:
    """Seconds per call of ``fn`` by operator kind, from ``calls`` profiled calls after one unprofiled warm-up.

    Every name of :func:`kind_names` is a key; the values add up to the profiled wall time per call.
    """
    if calls < 1:
        raise ValueError(f"calls must be at least 1, got calls={calls!r}")
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        wall = (time.perf_counter() - started) / calls
    totals: dict[str, float] = defaultdict(float, {name: 0.0 for name in kind_names(kinds)})
    for event in prof.key_averages():
        totals[classify(event.key, kinds)] += event.self_cpu_time_total / 1e6 / calls
    totals[PYTHON] = max(0.0, wall - sum(v for k, v in totals.items() if k != PYTHON))
    return dict(totals)


def shares(seconds: dict[str, float]) -> dict[str, float]:
    """Each kind's fraction of the total."""
    total = sum(seconds.values()) or 1.0
    return {kind: value / total for kind, value in seconds.items()}
