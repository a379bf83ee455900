"""Fuse GroupNorm -> activation in a ``torch.fx`` graph of the model (for models fx can trace).

A GroupNorm module called once, whose single user is an activation (module, ``torch.nn.functional`` function,
``torch`` function or tensor method), takes the activation; the activation node is removed from the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching.activations import activation_name
from groupnorm.patching.report import PatchReport

_FUNCTION_ACTIVATIONS = {
    F.silu: "silu",
    F.relu: "relu",
    torch.relu: "relu",
    F.gelu: "gelu",
}
_METHOD_ACTIVATIONS = {"relu": "relu"}


class _Tracer(fx.Tracer):
    """Keeps GroupNorm modules as single calls in the graph (their Python argument checks cannot be traced)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, nn.GroupNorm) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """``model`` as a ``GraphModule`` sharing its parameters (raises what the tracer raises)."""
    tracer = _Tracer()
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _node_activation(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    if node.op == "call_module":
        return activation_name(modules[node.target])
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


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def fuse_graph(graph_module: fx.GraphModule, report: PatchReport, reasons: dict[int, str]) -> None:
    """Fuse the eligible GroupNorm -> activation nodes of ``graph_module`` (in place, recompiled)."""
    modules = dict(graph_module.named_modules())
    calls: dict[str, int] = {}
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in list(graph_module.graph.nodes):
        norm = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(norm, GroupNorm) or norm.activation is not None:
            continue
        # A norm called from several places, or whose output is used elsewhere too, cannot take the activation.
        if calls[node.target] != 1:
            reasons.setdefault(id(norm), f"called {calls[node.target]} times in the traced graph")
            continue
        if len(node.users) != 1:
            what = "nothing" if not node.users else "more than an activation"
            reasons.setdefault(id(norm), f"output used by {what} in the traced graph")
            continue
        (user,) = node.users
        activation = _node_activation(user, modules)
        if activation in (None, "none") or not user.args or user.args[0] is not node:
            reasons.setdefault(id(norm), f"output goes to {_describe(user)}, not a fusable activation")
            continue
        norm.activation = activation
        user.replace_all_uses_with(node)
        graph_module.graph.erase_node(user)
        report.fused.append((node.target, _describe(user), activation, "fx"))
    graph_module.graph.lint()
    graph_module.recompile()
