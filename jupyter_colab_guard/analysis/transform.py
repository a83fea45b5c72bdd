"""IPython's own cell transformation, with a map back to the original lines."""

from __future__ import annotations

import difflib
import re

from IPython.core.inputtransformer2 import TransformerManager

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
_IPYTHON_SYNTAX = re.compile(
    r"^[ \t]*[!%?,;/]|^[ \t]*\w[\w.]*[ \t]*=[ \t]*[!%]|\?[ \t]*$|^[ \t]*(?:>>>|In \[)|\A[ \t]+\S",
    re.MULTILINE,
)


def transform(source: str) -> tuple[str, list[int]]:
    """Transformed Python text and, per transformed line, its 1-based original line."""
    if not _IPYTHON_SYNTAX.search(source) and "\n" in source.strip("\n"):
        code = source if source.endswith("\n") else source + "\n"
        return code, list(range(1, code.count("\n") + 1))
    code = TransformerManager().transform_cell(source)
    code = _automagic(code)
    original = source.splitlines()
    lines = code.splitlines()
    if len(lines) == len(original):
        return code, list(range(1, len(lines) + 1))
    line_map = [1] * len(lines)
    matcher = difflib.SequenceMatcher(None, original, lines, autojunk=False)
    for _tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for j in range(j1, j2):
            line_map[j] = min(i1 + (j - j1), max(i1, i2 - 1)) + 1
    return code, line_map
