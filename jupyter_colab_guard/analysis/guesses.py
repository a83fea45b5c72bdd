"""Values that are a loop's items: the `guessed` condition of a call leaf.

A guessing loop hands each item of a list (a wordlist's lines, `range(10000)` PINs,
`itertools.product` strings) to a call as its password: `for pw in words:
zf.extractall(pwd=pw.strip().encode())`. An item *is* the value when the argument is the
loop's name, a method of it (`pw.strip()`), `str()`/`bytes()` of it, or text built around
it (`f"{pw}"`, `pw + "\\n"`, `"".join(pw)`); a field of it (`cfg["password"]`,
`acc.password`) is a record's own value, not a guess.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

import libcst as cst

KeyOf = Callable[[cst.BaseExpression], "str | None"]  # a dict key's text, if literal
_CONVERSIONS = frozenset({"str", "bytes", "bytearray"})


def loop_items(loop: ast.For | ast.AsyncFor) -> frozenset[str]:
    """Names that hold the loop's item in its body: the target, and names assigned from it
    (`pw = line.strip()`), followed through a few assignments."""
    names = {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
    if _enumerated(loop) and isinstance(loop.target, ast.Name):
        names = {f"{loop.target.id}[1]"}  # `for line in enumerate(f)`: line[1] is the item
    return names_from(names, loop.body)


def names_from(start: set[str], body: list[ast.stmt]) -> frozenset[str]:
    """``start`` and the names assigned from them in ``body`` (a few assignments deep)."""
    names = set(start)
    assigns: list[tuple[list[ast.expr], ast.expr]] = []
    for statement in body:
        for node in ast.walk(statement):
            if isinstance(node, ast.Assign):
                assigns.append((node.targets, node.value))
            elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
                assigns.append(([node.target], node.value))
    for _ in range(3):
        grown = False
        for targets, value in assigns:
            if _is_item(value, names):
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name) and name.id not in names:
                            names.add(name.id)
                            grown = True
        if not grown:
            break
    return frozenset(names)


def item_arguments(
    statement: ast.AST,
    name: str,
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    items: frozenset[str],
) -> set[str]:
    """Parameters of ``function`` that its calls in ``statement`` pass an item."""
    spec = function.args
    positional = [a.arg for a in (*spec.posonlyargs, *spec.args)]
    found: set[str] = set()
    for call in ast.walk(statement):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        if isinstance(func, ast.Name) and func.id == name:
            shift = 0
        elif isinstance(func, ast.Attribute) and func.attr == name:
            shift = 1 if positional[:1] in (["self"], ["cls"]) else 0
        else:
            continue
        for index, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):
                break
            if index + shift < len(positional) and _is_item(arg, items):
                found.add(positional[index + shift])
        for keyword in call.keywords:
            if keyword.arg and _is_item(keyword.value, items):
                found.add(keyword.arg)
    return found


# `i += 1`, `i = i + 1`, `i = (i + 1) % len(keys)`: an index the code moves on
_ADVANCED = re.compile(r"\b([A-Za-z_]\w*)\s*(?:\+=\s*1\b|=\s*\(?\s*\1\s*\+\s*1\b)")


def advanced_indexes(code: str) -> frozenset[str]:
    """Names the code moves on by one and uses as a subscript (`keys[idx]`): a pick from
    such a subscript rotates through the collection, as `keys[i % len(keys)]` does. Each
    comes back as "[name]", the form `is_item` looks for."""
    names: set[str] = set()
    for needle in ("+= 1", "+ 1"):  # only the lines that hold one are searched
        pos = code.find(needle)
        while pos != -1:
            start = code.rfind("\n", 0, pos) + 1
            end = code.find("\n", pos)
            end = len(code) if end == -1 else end
            names.update(m.group(1) for m in _ADVANCED.finditer(code, start, end))
            pos = code.find(needle, end)
    return frozenset(f"[{name}]" for name in names if f"[{name}]" in code)


def _enumerated(loop: ast.For | ast.AsyncFor) -> bool:
    call = loop.iter
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "enumerate"
        and bool(call.args)
    )


def _is_item(node: ast.expr, names: set[str] | frozenset[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.Subscript):  # an enumerated pair's item
        index = node.slice
        return (
            isinstance(node.value, ast.Name)
            and isinstance(index, ast.Constant)
            and f"{node.value.id}[{index.value!r}]" in names
        )
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            if node.func.attr == "join" and node.args:  # "".join(chars) of a product's item
                return _is_item(node.args[0], names)
            return _is_item(node.func.value, names)
        if isinstance(node.func, ast.Name) and node.func.id in _CONVERSIONS and node.args:
            return _is_item(node.args[0], names)
        return False
    if isinstance(node, ast.JoinedStr):
        return any(
            isinstance(v, ast.FormattedValue) and _is_item(v.value, names) for v in node.values
        )
    if isinstance(node, ast.BinOp):
        return _is_item(node.left, names) or _is_item(node.right, names)
    return False


def is_item(node: cst.BaseExpression, names: frozenset[str]) -> bool:
    """The same test on a libcst expression (the analysed snippet's); a pick that rotates
    through a collection (`keys[i % len(keys)]`, `random.choice(keys)`) is an item too."""
    if isinstance(node, cst.Name):
        return node.value in names
    if _rotating_pick(node):
        return True
    if isinstance(node, cst.Subscript) and len(node.slice) == 1:
        index = node.slice[0].slice
        if not isinstance(index, cst.Index):
            return False
        if isinstance(index.value, cst.Name):  # `keys[idx]`, idx moved on elsewhere
            return f"[{index.value.value}]" in names
        return (  # an enumerated pair's item
            isinstance(node.value, cst.Name)
            and isinstance(index.value, cst.Integer)
            and f"{node.value.value}[{index.value.value}]" in names
        )
    if isinstance(node, cst.Call):
        func = node.func
        if isinstance(func, cst.Attribute):
            if func.attr.value == "join" and node.args:
                return is_item(node.args[0].value, names)
            return is_item(func.value, names)
        if isinstance(func, cst.Name) and func.value in _CONVERSIONS and node.args:
            return is_item(node.args[0].value, names)
        return False
    if isinstance(node, cst.FormattedString):
        return any(
            isinstance(p, cst.FormattedStringExpression) and is_item(p.expression, names)
            for p in node.parts
        )
    if isinstance(node, cst.BinaryOperation):
        return is_item(node.left, names) or is_item(node.right, names)
    return False


def _rotating_pick(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.Subscript) and len(node.slice) == 1:
        index = node.slice[0].slice
        return (
            isinstance(index, cst.Index)
            and isinstance(index.value, cst.BinaryOperation)
            and isinstance(index.value.operator, cst.Modulo)
        )
    if isinstance(node, cst.Call) and node.args:
        func = node.func
        name = func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", "")
        return name == "choice"
    return False


def guessed_arguments(call: cst.Call, names: frozenset[str], key_of: KeyOf) -> tuple[str, ...]:
    """Which arguments of ``call`` are the loop's item: positional ones by index ("0"),
    keywords by name ("password"), a literal dict's entries as "data.password" and a
    literal tuple's or list's as "args.0"."""
    found: list[str] = []
    position = 0
    for arg in call.args:
        if arg.star:
            continue
        key = arg.keyword.value if arg.keyword else str(position)
        position += 0 if arg.keyword else 1
        if is_item(arg.value, names):
            found.append(key)
        elif isinstance(arg.value, cst.Dict):
            for element in arg.value.elements:
                if isinstance(element, cst.DictElement) and is_item(element.value, names):
                    field = key_of(element.key)
                    if field:
                        found.append(f"{key}.{field}")
        elif isinstance(arg.value, cst.Tuple | cst.List):  # `args=(i,)` of a thread
            for index, element in enumerate(arg.value.elements):
                if is_item(element.value, names):
                    found.append(f"{key}.{index}")
    return tuple(found)
