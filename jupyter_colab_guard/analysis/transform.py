"""IPython's own cell transformation, with a map back to the original lines."""

from __future__ import annotations

import difflib
import re

from IPython.core.inputtransformer2 import TransformerManager

# Line magics that IPython runs without '%' when a cell is one line (automagic).
AUTOMAGIC = frozenset(
    {"pip", "conda", "mamba", "micromamba", "uv", "sx", "system", "sc", "alias",
     "alias_magic", "run", "writefile"}
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


def transform(source: str) -> tuple[str, list[int]]:
    """Transformed Python text and, per transformed line, its 1-based original line."""
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
