"""``patch``: speed up a model you already have by moving its GroupNorms onto the fused op.

Two steps, both keeping every weight bit for bit:

1. every ``torch.nn.GroupNorm`` becomes a :class:`groupnorm.GroupNorm` (same parameters, device, dtype, training
   mode; :func:`groupnorm.convert_norms` with ``source="gn"``);
2. a GroupNorm whose output goes only into a SiLU, GELU or ReLU takes that activation into its own call, so the
   activation no longer reads and writes the whole tensor again. Two rewrites find the pattern:

   - in any ``nn.Sequential``, a GroupNorm child followed directly by an activation module (the activation child
     becomes ``nn.Identity``); this works for every model, traceable or not;
   - for models ``torch.fx`` can trace, the graph: a GroupNorm module called once, whose single user is an
     activation (module, ``torch.nn.functional`` function, ``torch`` function or tensor method) — the diffusion
     UNet/VAE block ``h = self.nonlinearity(self.norm1(h))`` is this case. The model is then returned as a
     ``torch.fx.GraphModule``.

The returned :class:`PatchReport` lists what was swapped and fused, and why a traced rewrite was not possible.

Example::

    >>> import torch, groupnorm
    >>> block = torch.nn.Sequential(torch.nn.GroupNorm(8, 32), torch.nn.SiLU(), torch.nn.Conv2d(32, 32, 3))
    >>> block, report = groupnorm.patch(block)
    >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
    patch: 1 GroupNorm(s) moved to groupnorm.GroupNorm, 1 activation(s) fused
      swapped 0
      fused 0 + 1 (silu, Sequential)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from groupnorm.activations import module_activation_name
from groupnorm.convert import convert_norms
from groupnorm.layers.group_norm import GroupNorm

_FUNCTION_ACTIVATIONS = {
    F.silu: "silu",
    F.relu: "relu",
    torch.relu: "relu",
    F.gelu: "gelu",
}
_METHOD_ACTIVATIONS = {"relu": "relu"}


@dataclass
class PatchReport:
    """What :func:`patch` changed: swapped module paths, ``(norm path, activation path, name, how)`` fusions."""

    swapped: list[str] = field(default_factory=list)
    fused: list[tuple[str, str, str, str]] = field(default_factory=list)
    traced: bool = False
    trace_error: str | None = None

    def __str__(self) -> str:
        counts = f"{len(self.swapped)} GroupNorm(s) moved to groupnorm.GroupNorm, {len(self.fused)} activation(s) fused"
        lines = [f"patch: {counts}"]
        lines += [f"  swapped {path or '<root>'}" for path in self.swapped]
        lines += [f"  fused {norm} + {act} ({name}, {how})" for norm, act, name, how in self.fused]
        if self.trace_error:
            lines.append(f"  graph rewrite skipped (torch.fx could not trace the model: {self.trace_error})")
        return "\n".join(lines)


class _Tracer(fx.Tracer):
    """Keeps GroupNorm modules as single calls in the graph (their Python argument checks cannot be traced)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, nn.GroupNorm) or super().is_leaf_module(m, module_qualified_name)


def _trace(model: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _fuse_sequentials(model: nn.Module, report: PatchReport) -> None:
    for prefix, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for norm_name, act_name in zip(names, names[1:]):
            norm, act = parent._modules[norm_name], parent._modules[act_name]
            activation = module_activation_name(act)
            if not isinstance(norm, GroupNorm) or norm.activation is not None or activation in (None, "none"):
                continue
            norm.activation = activation
            parent._modules[act_name] = nn.Identity()
            path = f"{prefix}." if prefix else ""
            report.fused.append((path + norm_name, path + act_name, activation, "Sequential"))


def _node_activation(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    if node.op == "call_module":
        return module_activation_name(modules[node.target])
    if node.op == "call_function":
        name = _FUNCTION_ACTIVATIONS.get(node.target)
        if node.target is F.gelu and node.kwargs.get("approximate", "none") == "tanh":
            name = "gelu_tanh"
        extra_args = node.args[1:] or [
            v for k, v in node.kwargs.items() if k not in ("approximate", "inplace")
        ]
        return name if not extra_args else None
    if node.op == "call_method" and len(node.args) == 1:
        return _METHOD_ACTIVATIONS.get(node.target)
    return None


def _fuse_graph(graph_module: fx.GraphModule, report: PatchReport) -> None:
    modules = dict(graph_module.named_modules())
    calls: dict[str, int] = {}
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), GroupNorm):
            continue
        norm = modules[node.target]
        # A norm called from several places, or whose output is used elsewhere too, cannot take the activation.
        if calls[node.target] != 1 or norm.activation is not None or len(node.users) != 1:
            continue
        (user,) = node.users
        activation = _node_activation(user, modules)
        if activation in (None, "none") or user.args[0] is not node:
            continue
        norm.activation = activation
        user.replace_all_uses_with(node)
        graph_module.graph.erase_node(user)
        where = (
            user.target if user.op == "call_module" else getattr(user.target, "__name__", str(user.target))
        )
        report.fused.append((node.target, str(where), activation, "fx"))
    graph_module.graph.lint()
    graph_module.recompile()


def patch(model: nn.Module, *, fuse: bool = True, trace: bool = True) -> tuple[nn.Module, PatchReport]:
    """Move ``model``'s GroupNorms onto the fused op and fuse GroupNorm→activation pairs; returns
    ``(model, report)``. The model is changed in place; with a traced rewrite the returned model is a
    ``torch.fx.GraphModule`` sharing its parameters. ``fuse=False`` only swaps; ``trace=False`` skips torch.fx.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got model of type {type(model).__name__}")
    report = PatchReport()
    model, summary = convert_norms(model, source="gn")
    report.swapped = [r.path for r in summary.replaced]
    if not fuse:
        return model, report
    _fuse_sequentials(model, report)
    if not trace:
        return model, report
    try:
        traced = _trace(model)
    except Exception as error:  # noqa: BLE001  (any tracing failure just means: no graph rewrite)
        report.trace_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return model, report
    report.traced = True
    before = len(report.fused)
    _fuse_graph(traced, report)
    if len(report.fused) == before:
        return model, report  # nothing to rewrite: keep the user's own module
    traced.train(model.training)
    return traced, report
