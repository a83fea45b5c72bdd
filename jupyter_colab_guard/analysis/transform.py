"""IPython's own cell transformation in linear time, with a map back to the original lines.

IPython's ``TransformerManager.transform_cell`` re-tokenizes the whole cell after each piece
of special syntax it rewrites (up to 500 times), so a cell of many ``!cmd`` lines costs
seconds to minutes. The same result comes from IPython's own transformer classes applied
to one logical line at a time: tokenizing resumes at the rewritten line, with the
indentation stack it had there, instead of at the top of the cell.
"""

from __future__ import annotations

import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass

from IPython.core.inputtransformer2 import (
    TRANSFORM_LOOP_LIMIT,
    HelpEnd,
    TokenTransformBase,
    TransformerManager,
    leading_empty_lines,
)
from IPython.utils.tokenutil import generate_tokens_catch_errors

from .budget import tick

# Line magics that IPython runs without '%' when a cell is one line (automagic).
AUTOMAGIC = frozenset(
    {
        "pip",
        "conda",
        "mamba",
        "micromamba",
        "uv",
        "sx",
        "system",
        "sc",
        "alias",
        "alias_magic",
        "run",
        "writefile",
    }
)
_AUTOMAGIC_LINE = re.compile(r"^(\s*)([A-Za-z_]\w*)(\s+(?![=(\[.,])(.*))?$")


def _automagic(code: str) -> str:
    """Emulate IPython's automagic for a one-line cell (`pip install x`)."""
    stripped = code.strip("\n")
    if "\n" in stripped:
        return code
    m = _AUTOMAGIC_LINE.match(stripped)
    if not m or m.group(2) not in AUTOMAGIC:
        return code
    return f"{m.group(1)}get_ipython().run_line_magic({m.group(2)!r}, {(m.group(4) or '')!r})\n"


# Anything IPython's static transforms act on: escapes (! % ? , ; /) at a line start,
# `x = !cmd`, `obj?`, prompts, a first line indented. Without them the cell is left as it is.
# Line starts as IPython sees them: after any character str.splitlines() breaks at.
_BREAK = r"(?:^|(?<=[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]))"
_IPYTHON_SYNTAX = re.compile(
    rf"{_BREAK}[ \t\x0c]*[!%?,;/]|=[ \t\x0c]*(?:\\\r?\n[ \t\x0c]*)*[!%]"
    rf"|\?[ \t\x0c]*(?:$|\r)|{_BREAK}[ \t]*(?:>>>|In \[)|\A\s*[ \t]\S",
    re.MULTILINE,
)
_MANAGER = TransformerManager()


def python_text(code: str) -> str:
    """``code`` with Python's own line ends (``\\r\\n`` and ``\\r`` read as ``\\n``, which
    the compiler does too, inside strings as well): line N of the result is ast's line N."""
    return code.replace("\r\n", "\n").replace("\r", "\n") if "\r" in code else code


# The same test for the usual cell (no line break but "\n"): literal-prefixed patterns
# the regex engine scans for quickly, on the cell with "\n" in front (line 1 starts a line).
_ODD_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_SYNTAX_PARTS = (
    re.compile(r"\n[ \t]*[!%?,;/]"),
    re.compile(r"=[ \t]*(?:\\\n[ \t]*)*[!%]"),
    re.compile(r"\?[ \t]*(?:\n|\Z)"),
    re.compile(r"\n[ \t]*(?:>>>|In \[)"),
    re.compile(r"\A\s*[ \t]\S"),
)


def may_have_ipython_syntax(source: str) -> bool:
    """False when IPython's transforms certainly leave ``source`` as it is."""
    if _ODD_BREAKS.search(source):
        return _IPYTHON_SYNTAX.search(source) is not None
    text = "\n" + source
    return any(p.search(text) for p in _SYNTAX_PARTS)


def transform(source: str, syntax: bool | None = None) -> tuple[str, list[int]]:
    """Python text as IPython would run it and, per line of that text, its 1-based line in
    ``source`` (lines counted as Python counts them). Raises what IPython raises.
    ``syntax``: ``may_have_ipython_syntax(source)`` when the caller knows it already."""
    if syntax is None:
        syntax = may_have_ipython_syntax(source)
    if not syntax:  # IPython would leave it as it is
        code = python_text(_automagic(source if source.endswith("\n") else source + "\n"))
        return code, list(range(1, code.count("\n") + 1))
    lines, origin = transform_lines(source)
    code = _automagic("".join(lines))
    return python_text(code), _python_line_map(source, lines, origin)


def transform_cell(source: str) -> str:
    """The same text as ``TransformerManager().transform_cell(source)``."""
    return "".join(transform_lines(source)[0])


def transform_lines(source: str) -> tuple[list[str], list[int]]:
    """IPython's physical lines after transformation, and for each the 0-based index of the
    ``source.splitlines()`` line it came from."""
    cell = source if source.endswith("\n") else source + "\n"
    lines = cell.splitlines(keepends=True)
    origin = list(range(len(lines)))
    for step in _MANAGER.cleanup_transforms + _MANAGER.line_transforms:
        before = len(lines)
        lines = step(lines)
        if len(lines) != before:
            origin = _realign(origin, before, len(lines), step is leading_empty_lines)
    return _token_transforms(lines, origin)


def _realign(origin: list[int], before: int, after: int, leading: bool) -> list[int]:
    """Origins after a cleanup step changed the number of lines: leading blank lines
    dropped, a cell magic's one call, or prompt stripping that joined a "\\r" line with
    the line end left of a stripped prompt (each new line keeps the first origin)."""
    if leading:
        return origin[before - after :]
    if after == 1:
        return [origin[0]]
    return origin[:after] + [origin[-1]] * max(0, after - len(origin))


@dataclass(frozen=True, slots=True)
class _State:
    """What Python's tokenizer carries from one logical line to the next."""

    indents: tuple[int, ...] = (0,)
    depth: int = 0  # the tokenizer's own bracket depth: below zero after a stray `)`
    parens: int = 0  # IPython's bracket depth (never below zero)


def _token_transforms(lines: list[str], origin: list[int]) -> tuple[list[str], list[int]]:
    finders: list[type[TokenTransformBase]] = list(_MANAGER.token_transformers)
    start, state, changes = 0, _State(), 0
    while True:
        done = None
        for group, shift, first, before in _logical_lines(lines, start, state):
            tick()
            if not finders or not _maybe(lines, group, shift, first):
                continue  # (IPython still tokenizes to the end, and raises what it meets)
            found = [t for cls in finders if (t := cls.find([group])) is not None]
            for candidate in sorted(found, key=TokenTransformBase.sortby):
                _move(candidate, shift)
                try:
                    new = candidate.transform(lines)
                except SyntaxError:
                    continue
                done = (candidate.start_line, new, first, before)
                break
            if done is not None:
                break
            # every candidate here failed: IPython finds this line first forever after
            finders = [cls for cls in finders if not any(isinstance(t, cls) for t in found)]
        if done is None:
            return lines, origin
        changes += 1
        if changes >= TRANSFORM_LOOP_LIMIT:
            raise RuntimeError(
                f"Input transformation still changing after {TRANSFORM_LOOP_LIMIT} iterations."
            )
        at, new, start, state = done
        removed = len(lines) - len(new)
        origin = origin[: at + 1] + origin[at + 1 + removed :]
        lines = new


_ESCAPES = re.compile(r"[!%?,;/]")  # a line without any of these has nothing to transform


def _maybe(lines: list[str], group: list[tokenize.TokenInfo], shift: int, first: int) -> bool:
    last = group[-1].end[0] + shift
    if last - first <= 1:
        return _ESCAPES.search(lines[first]) is not None if first < len(lines) else False
    return _ESCAPES.search("".join(lines[first:last])) is not None


def _move(candidate: TokenTransformBase, shift: int) -> None:
    """Rows of a candidate found in tokens of a resumed tokenizer, made absolute."""
    candidate.start_line += shift
    if isinstance(candidate, HelpEnd):
        candidate.q_line += shift


def _column(line: str) -> int:
    """The indentation column Python's tokenizer computes for a line."""
    column = 0
    for char in line:
        if char == " ":
            column += 1
        elif char == "\t":
            column = (column // 8 + 1) * 8
        elif char == "\x0c":
            column = 0
        else:
            break
    return column


def _priming(state: _State) -> list[str]:
    """Lines that leave Python's tokenizer in ``state`` (none for a fresh one)."""
    if state.indents == (0,) and state.depth == 0:
        return []
    prime = [" " * column + "pass\n" for column in state.indents]
    if state.depth < 0:
        prime.append(" " * state.indents[-1] + ")" * -state.depth + "\n")
    return prime


def _logical_lines(
    lines: list[str], start: int, state: _State
) -> Iterator[tuple[list[tokenize.TokenInfo], int, int, _State]]:
    """Token groups as IPython's ``make_tokens_by_line`` makes them, for ``lines[start:]``,
    lazily, tokenizing as if the lines before had left ``state``. Yields (group, the
    number to add to its rows, its first physical line (0-based), the state before it)."""
    prime = _priming(state)
    skip = len(prime)
    shift = start - skip
    feed = iter(prime + lines[start:]) if prime else iter(lines[start:])
    indents, depth, parens = list(state.indents), state.depth, state.parens
    group: list[tokenize.TokenInfo] = []
    first, before = start, state
    try:
        for count, token in enumerate(generate_tokens_catch_errors(feed.__next__, _EOF)):
            if not count & 15:
                # a line can hold a million tokens, and Python's tokenizer takes time
                # quadratic in a run of spaces before a token it cannot read
                tick()
            kind = token.type
            if token.start[0] <= skip:
                continue  # the priming lines
            if kind == tokenize.ERRORTOKEN and not token.string and token.start == token.end:
                # the catch-all's stand-in for an error: (row, end row) of the token before
                token = token._replace(start=(token.start[0], token.start[1] + shift))
                token = token._replace(end=token.start)
            group.append(token)
            if kind == tokenize.OP:
                if token.string in _OPENING:
                    depth, parens = depth + 1, parens + 1
                elif token.string in _CLOSING:
                    depth, parens = depth - 1, max(parens - 1, 0)
            elif kind == tokenize.NEWLINE or (kind == tokenize.NL and parens <= 0):
                yield group, shift, first, before
                group, first = [], token.end[0] + shift
                before = _State(tuple(indents), depth, parens)
            elif kind == tokenize.INDENT:
                indents.append(_column(token.line))
            elif kind == tokenize.DEDENT and len(indents) > 1:
                indents.pop()
    except tokenize.TokenError:
        pass  # the cell ends inside a string or brackets: IPython takes that as it is
    if group:
        yield group, shift, first, before


_EOF = ["expected EOF"]
_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")


def _python_line_map(source: str, lines: list[str], origin: list[int]) -> list[int]:
    """Per line of the transformed text (Python's line ends), the 1-based line of
    ``source`` (Python's line ends) it came from."""
    original = source.splitlines(keepends=True)
    source_line: list[int] = []  # per splitlines() element of the source: its Python line
    number = 1
    for element in original:
        source_line.append(number)
        if element.endswith(("\n", "\r")):
            number += 1
    out: list[int] = []
    fresh, after_cr = True, False
    for element, came_from in zip(lines, origin, strict=True):
        if after_cr and element.startswith("\n"):
            element = element[1:]  # "\r" then "\n": one line end
        if not element:
            continue
        if fresh:
            out.append(source_line[came_from] if came_from < len(source_line) else number)
        fresh = element.endswith(("\n", "\r"))
        after_cr = element.endswith("\r")
    return out or [1]
