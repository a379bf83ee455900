"""Fuse a norm and the activation a known block applies right after it, checked against the block's own source.

A rule names two child modules of a block, ``norm`` and ``act`` (and any ``between`` children that must be
``nn.Identity``, such as timm's ``drop_block``). The rule is used only when the installed class's source shows,
in every method but ``__init__``, that ``self.<act>`` is called exclusively as ``v = self.<act>(v)`` directly
after ``v = self.<norm>(v)`` (or after an ``if``/``else`` whose every branch ends in that call), and that
``self.<norm>`` is called nowhere else. Then the norm's output has no other reader, the activation no other
input, and moving the activation into the norm (``norm.activation = ...``, the activation child replaced by
``nn.Identity``) computes the same thing. A library version that writes the block differently fails the check
and the pair is left, with the reason, in the report.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections import Counter
from dataclasses import dataclass
from functools import cache

from torch import nn

from groupnorm.layers.group_norm import GroupNorm
from groupnorm.patching.activations import activation_name
from groupnorm.patching.report import PatchReport


@dataclass(frozen=True)
class PairRule:
    """``self.<norm>`` is followed by ``self.<act>`` in the block's methods, with only ``between`` in between."""

    norm: str
    act: str
    between: tuple[str, ...] = ()


def _self_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _call_statement(stmt: ast.stmt, attrs: tuple[str, ...], var: str | None = None) -> str | None:
    """The variable ``v`` when ``stmt`` is ``v = self.<attr>(v, ...)`` for one of ``attrs``, else None."""
    if not (
        isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
    ):
        return None
    call, target = stmt.value, stmt.targets[0].id
    if not (isinstance(call, ast.Call) and _self_attr(call.func) in attrs and call.args):
        return None
    first = call.args[0]
    if not (isinstance(first, ast.Name) and first.id == target) or (var is not None and target != var):
        return None
    return target


def _ends_in_norm(stmt: ast.stmt, norm: str, var: str) -> int:
    """How many ``v = self.<norm>(v, ...)`` calls end ``stmt`` on every path (0 when one path does not)."""
    if _call_statement(stmt, (norm,), var) is not None:
        return 1
    if isinstance(stmt, ast.If) and stmt.body and stmt.orelse:
        counts = [_ends_in_norm(branch[-1], norm, var) for branch in (stmt.body, stmt.orelse)]
        return sum(counts) if all(counts) else 0
    return 0


def _statement_lists(tree: ast.AST) -> list[list[ast.stmt]]:
    lists = []
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                lists.append(block)
    return lists


def _is_presence_test(node: ast.AST, attr: str) -> bool:
    """``self.<attr>``, ``self.<attr> is None`` or ``self.<attr> is not None`` (what ``if`` tests may read)."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Is | ast.IsNot):
        comparator = node.comparators[0]
        return (
            isinstance(comparator, ast.Constant)
            and comparator.value is None
            and _self_attr(node.left) == attr
        )
    return _self_attr(node) == attr


def _references(methods: list[ast.FunctionDef], attr: str) -> tuple[int, int]:
    """``(loads of self.<attr>, those that only test it, as in ``if self.<attr>:``)``."""
    loads = tests = 0
    for method in methods:
        for node in ast.walk(method):
            if _self_attr(node) == attr and isinstance(node.ctx, ast.Load):
                loads += 1
            if isinstance(node, ast.If) and _is_presence_test(node.test, attr):
                tests += 1
    return loads, tests


def _methods(cls: type) -> list[ast.FunctionDef] | str:
    """Every method but ``__init__`` of ``cls`` and its bases outside torch, or why the source is not readable."""
    methods: list[ast.FunctionDef] = []
    for klass in cls.__mro__:
        if klass is object or klass.__module__.split(".")[0] == "torch":
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError) as error:
            return f"the source of {klass.__name__} is not readable ({type(error).__name__})"
        (class_def,) = [n for n in tree.body if isinstance(n, ast.ClassDef)] or [None]
        if class_def is None:
            return f"the source of {klass.__name__} is not a class definition"
        methods += [
            n
            for n in class_def.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name != "__init__"
        ]
    return methods


@cache
def back_to_back(cls: type, rule: PairRule) -> str | None:
    """None when ``cls``'s source applies ``rule.act`` only right after ``rule.norm``, else the reason it does not
    (cached per class: a class's source does not change while the program runs)."""
    methods = _methods(cls)
    if isinstance(methods, str):
        return methods
    pairs = norm_calls = 0
    for method in methods:
        for block in _statement_lists(method):
            for i, stmt in enumerate(block):
                var = _call_statement(stmt, (rule.act,))
                if var is None or len(stmt.value.args) != 1 or stmt.value.keywords:  # type: ignore[attr-defined]
                    continue
                j = i - 1
                while j >= 0 and _call_statement(block[j], rule.between, var) is not None:
                    j -= 1
                found = _ends_in_norm(block[j], rule.norm, var) if j >= 0 else 0
                if found:
                    pairs += 1
                    norm_calls += found
    act_loads, act_tests = _references(methods, rule.act)
    norm_loads, norm_tests = _references(methods, rule.norm)
    name = cls.__name__
    if pairs == 0:
        return f"{name}'s source does not apply {rule.act} right after {rule.norm}"
    if act_loads - act_tests != pairs:
        return f"{name} uses {rule.act} elsewhere too, not only right after {rule.norm}"
    if norm_loads - norm_tests != norm_calls:
        return f"{name} uses {rule.norm}'s output elsewhere too"
    return None


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def fuse_pair(
    block: nn.Module,
    path: str,
    rule: PairRule,
    label: str,
    uses: Counter[int],
    report: PatchReport,
    reasons: dict[int, str],
) -> None:
    """Fuse ``rule``'s pair in ``block`` (at ``path``) when it is safe; else record in ``reasons`` why not.

    ``uses`` counts how often each module (by id) appears in the model, so a module shared with another place
    is left alone; ``label`` names the rule in the report.
    """
    norm = block._modules.get(rule.norm)
    if not isinstance(norm, GroupNorm) or norm.activation is not None:
        return  # not a GroupNorm on the fused op (its own reason is recorded elsewhere), or fused already
    act = block._modules.get(rule.act)
    name = activation_name(act)
    reason = None
    if name in (None, "none"):
        reason = f"{label}.{rule.act} is {type(act).__name__}, which the op has no fused form of"
    elif any(not isinstance(block._modules.get(b), nn.Identity) for b in rule.between):
        kinds = ", ".join(f"{b}={type(block._modules.get(b)).__name__}" for b in rule.between)
        reason = f"{label} runs {kinds} between the norm and {rule.act}"
    elif "forward" in vars(block):
        reason = f"{label}'s forward is replaced on the instance (hooks?), so what runs is not known"
    elif any(_hooked(m) for m in (norm, act)) or any(uses[id(m)] > 1 for m in (norm, act)):
        reason = f"{rule.norm} or {rule.act} has hooks or is shared with another part of the model"
    else:
        reason = back_to_back(type(block), rule)
    if reason is not None:
        reasons.setdefault(id(norm), reason)
        return
    norm.activation = name
    setattr(block, rule.act, nn.Identity().train(act.training))
    prefix = f"{path}." if path else ""
    report.fused.append((prefix + rule.norm, prefix + rule.act, name, label))
