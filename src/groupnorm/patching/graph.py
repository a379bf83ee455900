"""Fuse GroupNorm -> activation in a ``torch.fx`` graph of the model (for models fx can trace).

A GroupNorm module called once, whose single user is an activation (module, ``torch.nn.functional`` function,
``torch`` function or tensor method), takes the activation; the activation node is removed from the graph.

A GroupNorm whose single user is an add (``+``, ``torch.add``, ``Tensor.add``; ``+=`` traces as ``+``) of it and
another node, whose own single user is such an activation, takes both: the three nodes become one call
``norm(x, residual=other)``, placed where the activation was (after ``other``). The fused norm adds ``other`` as
``+`` would (:mod:`~groupnorm.patching.residual`: in the op when the shapes and dtypes let it do so exactly, else
the stock way), since the shapes are known only when the model runs.

The graph module holds the caller's own submodules, while the caller's model keeps running its own ``forward``,
which still applies every activation. So the graph never changes a module it shares: each fused norm is a new
module of the same class over the same parameter tensors, put in the graph module's place only.
"""

from __future__ import annotations

import copy
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching.activations import activation_name
from groupnorm.patching.report import PatchReport
from groupnorm.patching.residual import add_residual

_FUNCTION_ACTIVATIONS = {
    F.silu: "silu",
    F.relu: "relu",
    torch.relu: "relu",
    F.gelu: "gelu",
}
_METHOD_ACTIVATIONS = {"relu": "relu"}
# Adds whose operands may come in either order, and in-place adds, which must write into the norm's output
# (their other operand may be read elsewhere).
_ADDS = {("call_function", operator.add), ("call_function", torch.add), ("call_method", "add")}
_IN_PLACE_ADDS = {("call_function", operator.iadd), ("call_method", "add_")}


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


def _added_to(node: fx.Node, add: fx.Node) -> tuple[fx.Node, bool] | None:
    """``(other, in_place)`` when ``add`` is ``node + other`` (or ``other + node``, or ``node += other``) of two
    nodes, else None."""
    kind = (add.op, add.target)
    if (kind not in _ADDS and kind not in _IN_PLACE_ADDS) or add.kwargs or len(add.args) != 2:
        return None
    first, second = add.args
    if first is node and isinstance(second, fx.Node) and second is not node:
        return second, kind in _IN_PLACE_ADDS
    if second is node and isinstance(first, fx.Node) and kind in _ADDS:
        return first, False
    return None


def _replace_with_residual_call(
    graph_module: fx.GraphModule,
    node: fx.Node,
    act: fx.Node,
    other: fx.Node,
    modules: dict[str, nn.Module],
    reasons: dict[int, str],
) -> None:
    """Replace ``act(node + other)`` by one call of ``node``'s module with ``residual=other``, where ``act`` was
    (``other`` may be computed after the norm, as torchvision's downsample is)."""
    graph = graph_module.graph
    (add,) = node.users
    with graph.inserting_before(act):
        fused = graph.call_module(node.target, node.args, {**node.kwargs, "residual": other})
    act.replace_all_uses_with(fused)
    for dead in (act, add, node):
        graph.erase_node(dead)
    shortcut = modules.get(other.target) if other.op == "call_module" else None
    if isinstance(shortcut, nn.GroupNorm) and len(other.users) == 1:
        # More precise than what an earlier rewrite saw (e.g. "last child of its Sequential").
        reasons[id(shortcut)] = f"its output is the residual that {node.target} adds in its call"


def _residual_match(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, fx.Node, fx.Node, bool] | str:
    """``(activation, activation node, other, in_place)`` when ``node``'s single user adds it to ``other`` and
    an activation takes the sum alone, else why not."""
    (add,) = node.users
    added = _added_to(node, add)
    if added is None or "residual" in node.kwargs:
        return f"output goes to {_describe(add)}, not a fusable activation"
    other, in_place = added
    users = list(add.users)
    act = users[0] if len(users) == 1 else None
    activation = None if act is None else _node_activation(act, modules)
    if activation in (None, "none") or act.args[0] is not add:
        then = f"{len(users)} users" if act is None else _describe(act)
        return f"output goes to {_describe(add)}, then to {then}, not a fusable activation"
    if act.op == "call_module" and _hooked(modules[act.target]):
        return "its activation module has hooks"
    return activation, act, other, in_place


def fuse_graph(
    graph_module: fx.GraphModule, shared: set[int], report: PatchReport, reasons: dict[int, str]
) -> None:
    """Fuse the eligible GroupNorm -> activation and GroupNorm -> add -> activation nodes of ``graph_module`` (in
    place, recompiled).

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
        match = None  # an add between the norm and the activation
        if activation in (None, "none") or not user.args or user.args[0] is not node:
            match = _residual_match(node, modules)
            if isinstance(match, str):
                reasons.setdefault(id(norm), match)
                continue
            activation = match[0]
        # Hooks would see the fused output, or (on the activation module) no longer run.
        if _hooked(norm) or (user.op == "call_module" and _hooked(modules[user.target])):
            reasons.setdefault(id(norm), "it or its activation module has hooks")
            continue
        parent_path, _, name = node.target.rpartition(".")
        parent = graph_module.get_submodule(parent_path)
        if id(parent) in shared:  # fx put the caller's own parent module in the graph: no place of its own
            reasons.setdefault(id(norm), "its parent module in the graph is the caller's own")
            continue
        twin = _fused_twin(norm, activation)
        setattr(parent, name, twin)
        if match is None:
            user.replace_all_uses_with(node)
            graph_module.graph.erase_node(user)
            report.fused.append((node.target, _describe(user), activation, "fx"))
        else:
            _, act, other, in_place = match
            add_residual(twin, activation, in_place=in_place)
            _replace_with_residual_call(graph_module, node, act, other, modules, reasons)
            report.fused.append((node.target, _describe(act), activation, "fx, residual add"))
    graph_module.graph.lint()
    graph_module.recompile()
