"""The linear pass: facts from statements the deep analysis did not finish.

It runs on Python's own ast (built in C), walks it without recursion and always finishes,
so a statement too large, too deep or too slow for the deep analysis is still seen:
imports, string literals and chains of ``+`` between them, dotted calls with literal
arguments, and the text every shell door (``!cmd``, ``%%bash``, ``os.system``,
``subprocess``) is given. No name resolution and no decoding: that is the deep analysis.
"""

from __future__ import annotations

import ast
import base64
import binascii
import codecs
import lzma
import zlib
from collections.abc import Callable, Iterable

from .facts import UNKNOWN, Anchor, Fact, FactSet, Value
from .fold import INFLATERS, MAX_FOLD, inflate
from .pyscan import URL_LIKE, Memory
from .shell import ShellScanner

# call names (last part) whose first argument is shell text or an argv list
SHELL_CALLS = frozenset(
    {
        "system",
        "system_raw",
        "system_piped",
        "getoutput",
        "getstatusoutput",
        "popen",
        "Popen",
        "run",
        "call",
        "check_call",
        "check_output",
        "spawn",
        "create_subprocess_shell",
        "create_subprocess_exec",
    }
)
SHELL_MAGICS = frozenset({"bash", "sh", "script", "system", "sx", "sc", "!", "pip", "conda"})
MAX_NESTED = 2  # python -c text analysed again, this deep


class LinearPass:
    def __init__(
        self,
        facts: FactSet,
        memory: Memory,
        anchor_of: Callable[[int], Anchor],
        wants_call: Callable[[str], bool] = lambda name: True,
    ) -> None:
        self.facts = facts
        self.wants_call = wants_call  # calls worth a fact (a rule or a sink names them)
        self.anchor_of = anchor_of  # line of the analysed code -> where facts point
        self.memory = memory
        self._chained: set[int] = set()  # `+` nodes inside a chain already read whole

    def __call__(self, nodes: Iterable[ast.AST], depth: int = 0) -> None:
        """Read statements; of a compound statement only its header (and what stands on
        the header's line): its other lines are statements of their own."""
        for statement in nodes:
            anchor = self.anchor_of(getattr(statement, "lineno", 1))
            shell = ShellScanner(
                self.facts,
                self.memory.files,
                self.memory.renames,
                lambda text, at, d: self.python_text(text, at, d),
                self.memory.environ,
                self.memory.origins,
            )
            aliases: dict[str, str] = {}
            for part in _header(statement):
                for node in ast.walk(part):
                    self._node(node, anchor, shell, aliases, depth)

    def python_text(self, text: str, anchor: Anchor, depth: int) -> None:
        if depth > MAX_NESTED:
            return
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
            return
        nested = LinearPass(self.facts, self.memory, lambda _line: anchor, self.wants_call)
        nested(tree.body, depth + 1)

    def _node(
        self,
        node: ast.AST,
        anchor: Anchor,
        shell: ShellScanner,
        aliases: dict[str, str],
        depth: int,
    ) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
                self._add("import", anchor, name=alias.name, evidence=f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or node.level):
            # a relative import counts by its dotted tail, as in the deep analysis
            module = node.module or ""
            shown = "." * node.level + module
            if module:
                self._add("import", anchor, name=module, evidence=f"from {shown} import")
            for alias in node.names:
                full = f"{module}.{alias.name}" if module else alias.name
                aliases[alias.asname or alias.name] = full
                self._add("import", anchor, name=full, evidence=f"from {shown} import")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            self._text(_as_text(node.value), anchor)
        elif isinstance(node, ast.JoinedStr):
            self._text(_joined(node), anchor)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            if id(node) in self._chained:
                return
            text = _concatenation(node, self._chained)
            if text is not None:
                self._text(text, anchor)
        elif isinstance(node, ast.Call):
            self._call(node, anchor, shell, aliases, depth)

    def _call(
        self,
        node: ast.Call,
        anchor: Anchor,
        shell: ShellScanner,
        aliases: dict[str, str],
        depth: int,
    ) -> None:
        name = _dotted(node.func)
        if name:
            head, _, rest = name.partition(".")
            if head in aliases:
                name = f"{aliases[head]}.{rest}" if rest else aliases[head]
            if self.wants_call(name):
                args = tuple(_literal(a) for a in node.args)
                kwargs = {k.arg: _literal(k.value) for k in node.keywords if k.arg}
                self._add("call", anchor, name=name, args=args, kwargs=kwargs, evidence=name)
        verb = node.func.attr if isinstance(node.func, ast.Attribute) else _dotted(node.func)
        decoded = _decode(node, verb)
        if decoded:  # hidden text: read as text, as shell and as Python, like the deep pass
            self._text(decoded, anchor)
            shell.scan(decoded, anchor, depth + 1)
            self.python_text(decoded, anchor, depth + 1)
        values = [_literal(a) for a in node.args]
        if verb == "run_line_magic" and len(values) >= 2 and _all_text(values[:2]):
            shell.scan(f"{values[0]} {values[1]}", anchor, depth)
        elif verb == "run_cell_magic" and len(values) >= 3 and _all_text(values[:3]):
            if values[0] in SHELL_MAGICS:
                shell.scan(values[2], anchor, depth)
            else:
                self._text(values[2], anchor)
        elif verb in SHELL_CALLS and values:
            first = values[0]
            if isinstance(first, str):
                shell.scan(first, anchor, depth)
            elif isinstance(first, list | tuple) and first and _all_text(first):
                shell.scan_argv(list(first), anchor, depth)

    def _text(self, text: str | None, anchor: Anchor) -> None:
        if not text or not text.strip():
            return
        stripped = text.strip()
        if URL_LIKE.match(stripped):
            self._add("url", anchor, text=stripped, evidence=stripped[:200])
        self._add("string", anchor, text=text, evidence=text[:200])

    def _add(self, kind: str, anchor: Anchor, **fields: object) -> None:
        self.facts.add(Fact(kind, anchor=anchor, **fields))  # type: ignore[arg-type]


_BODIES = ("body", "orelse", "handlers", "finalbody", "cases")


def _header(statement: ast.AST) -> list[ast.AST]:
    if not any(isinstance(getattr(statement, f, None), list) for f in _BODIES):
        return [statement]
    line = getattr(statement, "lineno", 0)
    parts: list[ast.AST] = []
    for name, value in ast.iter_fields(statement):
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, ast.AST):
                continue
            if name in _BODIES:  # a body statement on the header's line: `for x in y: f(x)`
                if getattr(item, "lineno", 0) == line:
                    parts.extend(_header(item))
            else:
                parts.append(item)
    return parts


def _as_text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _all_text(values: Iterable[Value]) -> bool:
    return all(isinstance(v, str) for v in values)


def _literal(node: ast.AST) -> Value:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(e) for e in node.elts]
        if all(not isinstance(i, list | tuple) for i in items):
            return items if isinstance(node, ast.List) else tuple(items)
        return UNKNOWN
    if isinstance(node, ast.JoinedStr):
        return _joined(node)
    if isinstance(node, ast.BinOp):
        text = _concatenation(node)
        return UNKNOWN if text is None else text
    return UNKNOWN


DECODERS = {
    "fromhex": lambda data: bytes.fromhex(data.decode() if isinstance(data, bytes) else data),
    "unhexlify": binascii.unhexlify,
    "a2b_hex": binascii.unhexlify,
    "b64decode": base64.b64decode,
    "urlsafe_b64decode": base64.urlsafe_b64decode,
    "standard_b64decode": base64.standard_b64decode,
    "decodebytes": base64.decodebytes,
    "b32decode": base64.b32decode,
    "b16decode": base64.b16decode,
    "b85decode": base64.b85decode,
    "a85decode": base64.a85decode,
}


def _decode(node: ast.Call, verb: str) -> str | None:
    """The text of a decoder called on a literal: ``"".join([chr(120), ...])``,
    ``"".join(map(chr, [...]))``, ``bytes.fromhex("...")``, ``base64.b64decode("...")``,
    ``codecs.decode("...", "rot13")``. None for anything else."""
    args = node.args
    try:
        if verb == "join" and len(args) == 1:
            return _chr_join(args[0])
        if verb in DECODERS and args and isinstance(args[0], ast.Constant):
            data = args[0].value
            if isinstance(data, str | bytes):
                raw = data.encode() if isinstance(data, str) and verb != "fromhex" else data
                return _as_text(DECODERS[verb](raw))
        if verb == "decompress" and args and isinstance(args[0], ast.Call):
            return _inflated(_dotted(node.func), args[0])
        if verb == "decode" and len(args) == 2 and _dotted(node.func) == "codecs.decode":
            data, how = _literal(args[0]), _literal(args[1])
            if isinstance(data, str) and isinstance(how, str):
                return _as_text(codecs.decode(data, how))
    except (ValueError, TypeError, LookupError, binascii.Error, OverflowError):
        return None
    return None


def _inflated(name: str, inner: ast.Call) -> str | None:
    """``zlib.decompress(base64.b64decode("..."))`` and the like: bounded (fold.inflate),
    and only the first MAX_FOLD characters are read."""
    how = INFLATERS.get(name)
    verb = inner.func.attr if isinstance(inner.func, ast.Attribute) else _dotted(inner.func)
    if how is None or verb not in DECODERS or not inner.args:
        return None
    data = inner.args[0].value if isinstance(inner.args[0], ast.Constant) else None
    if not isinstance(data, str | bytes):
        return None
    try:
        raw = DECODERS[verb](data.encode() if isinstance(data, str) else data)
        return _as_text(inflate(raw, how)[:MAX_FOLD])
    except (ValueError, TypeError, binascii.Error, zlib.error, lzma.LZMAError, OSError, EOFError):
        return None


def _chr_join(arg: ast.AST) -> str | None:
    if isinstance(arg, ast.Call) and _dotted(arg.func) == "map" and len(arg.args) == 2:
        if _dotted(arg.args[0]) == "chr" and isinstance(arg.args[1], ast.List | ast.Tuple):
            codes = [_literal(e) for e in arg.args[1].elts]
            return "".join(chr(c) for c in codes) if all(type(c) is int for c in codes) else None
        return None
    if not isinstance(arg, ast.List | ast.Tuple):
        return None
    parts: list[str] = []
    for item in arg.elts:
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            parts.append(item.value)
        elif (
            isinstance(item, ast.Call)
            and _dotted(item.func) == "chr"
            and len(item.args) == 1
            and isinstance(item.args[0], ast.Constant)
            and type(item.args[0].value) is int
        ):
            parts.append(chr(item.args[0].value))
        else:
            return None
    return "".join(parts)


def _joined(node: ast.JoinedStr) -> str:
    return "".join(
        v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "?"
        for v in node.values
    )


def _concatenation(node: ast.BinOp, chained: set[int] | None = None) -> str | None:
    """``"a" + "b" + ...`` of any length, without recursion; None unless all are text.
    The inner ``+`` nodes go into ``chained``."""
    parts: list[str] = []
    whole = True
    stack: list[ast.AST] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.BinOp) and isinstance(item.op, ast.Add):
            if chained is not None and item is not node:
                chained.add(id(item))
            stack.append(item.right)
            stack.append(item.left)
        elif isinstance(item, ast.Constant) and isinstance(item.value, str):
            parts.append(item.value)
        elif isinstance(item, ast.JoinedStr):
            parts.append(_joined(item))
        else:
            whole = False  # go on: every inner `+` is marked, so none is read again
    return "".join(parts) if whole else None


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a chain of names; `get_ipython().system` for a call at the root."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        parts.append(node.func.id)
    else:
        return ""
    return ".".join(reversed(parts))
