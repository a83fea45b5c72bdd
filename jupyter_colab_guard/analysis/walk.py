"""A read-only walk of a libcst tree: the same visit and leave calls, in the same order,
as ``node.visit(visitor)``, without rebuilding every node on the way.

libcst's own visit builds a new node for each node it leaves (its visitors may replace
children), which costs about as much as our analysis itself. Here each node class's child
fields are learned once, in the order libcst visits them, and read with ``getattr``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import libcst as cst

from .budget import tick

Method = Callable[[Any, cst.CSTNode], Any]
Plan = tuple[Method | None, Method | None, tuple[str, ...]]

# Nodes that hold nothing but whitespace or punctuation: no visitor of ours looks inside.
_LEAVES: tuple[type[cst.CSTNode], ...] = (
    cst.SimpleWhitespace,
    cst.ParenthesizedWhitespace,
    cst.TrailingWhitespace,
    cst.Newline,
    cst.EmptyLine,
    cst.Comment,
    cst.Comma,
    cst.Dot,
    cst.Colon,
    cst.Semicolon,
    cst.AssignEqual,
    cst.LeftParen,
    cst.RightParen,
    cst.LeftSquareBracket,
    cst.RightSquareBracket,
    cst.LeftCurlyBrace,
    cst.RightCurlyBrace,
    cst.ImportStar,
    cst.Name,
    cst.Integer,
    cst.Float,
    cst.Imaginary,
    cst.BaseBinaryOp,
    cst.BaseBooleanOp,
    cst.BaseCompOp,
    cst.BaseUnaryOp,
    cst.BaseAugOp,
)

_FIELDS: dict[type[cst.CSTNode], tuple[str, ...]] = {}
_PLANS: dict[tuple[type[cst.CSTVisitor], type[cst.CSTNode]], Plan] = {}


class _FieldOrder(cst.CSTVisitor):
    """Records the attributes libcst visits on one node, without going below it."""

    def __init__(self, root: cst.CSTNode) -> None:
        super().__init__()
        self.root = root
        self.fields: list[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        return False

    def on_leave(self, original_node: cst.CSTNode) -> None:
        return None

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        if node is self.root and attribute not in self.fields:
            self.fields.append(attribute)

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        return None


def child_fields(node: cst.CSTNode) -> tuple[str, ...]:
    """The fields of ``node``'s class that libcst visits, in its order. A field visited
    only when set (an f-string's format spec) is missing from a node without it; such
    fields come last in libcst, so any field not seen goes at the end."""
    cls = type(node)
    found = _FIELDS.get(cls)
    if found is None:
        recorder = _FieldOrder(node)
        node._visit_and_replace_children(recorder)  # one level: children are not entered
        seen = list(recorder.fields)
        seen += [
            f.name
            for f in dataclasses.fields(node)
            if f.name not in seen and _may_hold_nodes(getattr(node, f.name, None))
        ]
        found = _FIELDS[cls] = tuple(seen)
    return found


def _may_hold_nodes(value: object) -> bool:
    return value is None or isinstance(value, cst.CSTNode | tuple | list)


def _plan(visitor: cst.CSTVisitor, node: cst.CSTNode) -> Plan:
    kind, cls = type(visitor), type(node)
    name = cls.__name__
    visit = getattr(kind, f"visit_{name}", None)
    leave = getattr(kind, f"leave_{name}", None)
    fields: tuple[str, ...] = ()
    if visit is not None or leave is not None or not isinstance(node, _LEAVES):
        fields = child_fields(node)
    plan = _PLANS[(kind, cls)] = (visit, leave, fields)
    return plan


_NODE, _SEQUENCE, _OTHER = 1, 2, 0
_KINDS: dict[type, int] = {}  # a field value's class -> what it is to the walk


def _kind(cls: type) -> int:
    """(isinstance with libcst's abstract node class is slow: each class is asked once.)"""
    kind = _KINDS[cls] = (
        _NODE
        if issubclass(cls, cst.CSTNode)
        else _SEQUENCE
        if issubclass(cls, tuple | list)
        else _OTHER
    )
    return kind


def walk(visitor: cst.CSTVisitor, node: cst.CSTNode) -> None:
    """``node.visit(visitor)`` for a read-only visitor that defines only ``visit_<Node>``
    and ``leave_<Node>`` methods (no attribute hooks, no own ``on_visit``/``on_leave``).
    Ticks the time budget once per node it enters (a node with nothing to visit, call or
    enter, such as whitespace, is passed over)."""
    _walk(visitor, type(visitor), node, None)


def _walk(
    visitor: cst.CSTVisitor, kind: type[cst.CSTVisitor], node: cst.CSTNode, plan: Plan | None
) -> None:
    tick()
    if plan is None:
        plan = _PLANS.get((kind, type(node))) or _plan(visitor, node)
    visit, leave, fields = plan
    if visit is None or visit(visitor, node) is not False:
        plans, kinds = _PLANS, _KINDS
        for name in fields:
            value = getattr(node, name)
            cls = type(value)
            what = kinds.get(cls)
            if what is None:
                what = _kind(cls)
            if what == _NODE:
                child = plans.get((kind, cls)) or _plan(visitor, value)
                if child[0] is not None or child[1] is not None or child[2]:
                    _walk(visitor, kind, value, child)
            elif what == _SEQUENCE:
                for item in value:
                    child = plans.get((kind, type(item))) or _plan(visitor, item)
                    if child[0] is not None or child[1] is not None or child[2]:
                        _walk(visitor, kind, item, child)
    if leave is not None:
        leave(visitor, node)
