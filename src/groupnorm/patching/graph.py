"""Fuse GroupNorm -> activation in a ``torch.fx`` graph of the model (for models fx can trace).

A GroupNorm module called once, whose single user is an activation (module, ``torch.nn.functional`` function,
``torch`` function or tensor method), takes the activation; the activation node is removed from the graph.

The graph module holds the caller's own submodules, while the caller's model keeps running its own ``forward``,
which still applies every activation. So the graph never changes a module it shares: each fused norm is a new
module of the same class over the same parameter tensors, put in the graph module's place only.
"""

from __future__ import annotations

import copy

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


class ModeDependentGraph(Exception):
    """The traced graph differs with the modules' training flags (a graph keeps the branch it was traced in)."""


class _Tracer(fx.Tracer):
    """Keeps GroupNorm modules as single calls in the graph (their Python argument checks cannot be traced)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, nn.GroupNorm) or super().is_leaf_module(m, module_qualified_name)


def _code(model: nn.Module) -> str:
    return _Tracer().trace(model).python_code("self").src


def trace(model: nn.Module) -> fx.GraphModule:
    """``model`` as a ``GraphModule`` over its own submodules and parameters (raises what the tracer raises).

    The forward is traced a second time with every module's training flag flipped (then restored): a graph
    freezes the ``if self.training`` branches it went through, so when the two differ, or the second trace
    fails, the graph could compute the other mode wrong, and :class:`ModeDependentGraph` is raised instead.
    """
    tracer = _Tracer()
    graph = tracer.trace(model)
    flags = {m: m.training for m in model.modules()}
    try:
        for m, flag in flags.items():
            m.training = not flag
        other = _code(model)
    except Exception as error:  # noqa: BLE001  (the other mode's branches are what failed to trace)
        raise ModeDependentGraph(
            f"torch.fx could not trace the model with its training flags flipped ({type(error).__name__}), "
            "so the graph may keep one mode's branch"
        ) from error
    finally:
        for m, flag in flags.items():
            m.training = flag
    if other != graph.python_code("self").src:
        raise ModeDependentGraph(
            "the traced forward takes other branches when the training flags are flipped "
            "(a graph would keep one mode's)"
        )
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


def _hooked(m: nn.Module | None) -> bool:
    return m is not None and bool(m._forward_hooks or m._forward_pre_hooks)


def _fused_twin(norm: GroupNorm, activation: str) -> GroupNorm:
    """A new module of ``norm``'s class over the same parameter and buffer tensors (training one trains the other)
    that computes ``activation`` too; ``norm`` itself is not changed."""
    twin = copy.copy(norm)
    # copy.copy shares the instance dict's values: the twin gets its own parameter, buffer, module and hook tables,
    # so that assigning to one module never reaches the other.
    for key, value in vars(norm).items():
        if isinstance(value, dict | set):
            vars(twin)[key] = copy.copy(value)
    twin.activation = activation
    return twin


def fuse_graph(
    graph_module: fx.GraphModule, shared: set[int], report: PatchReport, reasons: dict[int, str]
) -> None:
    """Fuse the eligible GroupNorm -> activation nodes of ``graph_module`` (in place, recompiled).

    ``shared`` holds the ids of the caller's modules: none of them is changed (see the module docstring).
    """
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
        # Hooks would see the fused output, or (on the activation module) no longer run.
        if _hooked(norm) or (user.op == "call_module" and _hooked(modules[user.target])):
            reasons.setdefault(id(norm), "it or its activation module has hooks")
            continue
        parent_path, _, name = node.target.rpartition(".")
        parent = graph_module.get_submodule(parent_path)
        if id(parent) in shared:  # fx put the caller's own parent module in the graph: no place of its own
            reasons.setdefault(id(norm), "its parent module in the graph is the caller's own")
            continue
        setattr(parent, name, _fused_twin(norm, activation))
        user.replace_all_uses_with(node)
        graph_module.graph.erase_node(user)
        report.fused.append((node.target, _describe(user), activation, "fx"))
    graph_module.graph.lint()
    graph_module.recompile()
