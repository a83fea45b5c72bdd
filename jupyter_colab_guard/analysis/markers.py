"""Markers: constructs that can hide a name from the keyword prefilter, or run text as code.

A cell with a marker gets deep analysis even when no rule keyword shows, and so do the
lines that hold one. Most markers are words (set lookups in the cell's words); the few
that are syntax are a handful of short regexes.
"""

from __future__ import annotations

import re

from ..policy.keywords import word
from .locate import keyword_lines, line_of

# doors to a shell or an evaluator (also the sinks of a user's wrapper functions)
DOORS = frozenset(
    {
        "exec",
        "eval",
        "system",
        "system_raw",
        "system_piped",
        "popen",
        "subprocess",
        "pexpect",
        "pty",
        "getoutput",
        "getstatusoutput",
        "run_cell",
        "run_cell_magic",
        "run_line_magic",
        "alias_magic",
        "spawn",
        "spawnl",
        "spawnle",
        "spawnlp",
        "spawnlpe",
        "spawnv",
        "spawnve",
        "spawnvp",
        "spawnvpe",
        "posix_spawn",
        "posix_spawnp",
        "execl",
        "execle",
        "execlp",
        "execlpe",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        # values later shell lines read ($POOL)
        "environ",
        "putenv",
        # downloads saved under a name of their own, run later
        "urlretrieve",
        "download_url_to_file",
        # the network
        "create_connection",
        "open_connection",
    }
)

MARKER_WORDS = DOORS | frozenset(
    {
        # decoders and builders of hidden text
        "chr",
        "fromhex",
        "unhexlify",
        "a2b_hex",
        "b64decode",
        "b32decode",
        "b16decode",
        "b85decode",
        "a85decode",
        "urlsafe_b64decode",
        "standard_b64decode",
        "decodebytes",
        "codecs",
        "rot13",
        "rot_13",
        "base64",
        "decompress",
        # name lookups that hide what is called
        "__import__",
        "import_module",
        "getattr",
        "__builtins__",
        "globals",
        "vars",
    }
)
# A configuration file's name (analysis.config.EXTENSIONS); a bounded run, so linear.
_CONFIG_FILE = r"['\"]?[\w./~$-]+\.(?:json|ya?ml|toml|ini|cfg|conf|config|properties)\b"
# Several small patterns, not one alternation: each keeps a literal prefix the regex engine
# can scan for, which makes the set about twice as fast on large cells.
SYNTAX = tuple(
    re.compile(pattern, re.MULTILINE)
    for pattern in (
        r"['\"]\s*\+\s*[rbfRBF]?['\"]",
        r"['\"]\s*\.join\(\s*(?:[\[(]|map|chr)",
        r"\[\s*::\s*-1\s*\]",
        r"sys\.modules|__dict__\[|%run|%alias",
        r"\.write(?:_text|_bytes|lines)?\(|\.connect(?:_ex)?\(",  # files run later; sockets
        r"^[ \t]*[!%][^\n]*[{$]",  # `!cmd {var}` / `%magic $var`: IPython substitutes variables
        r"%(?:set_)?env\b",  # values later shell lines read ($POOL)
        r"wget\.download\(",  # a download saved under a name of its own
        r"gdown\.download\(",
        # a configuration file written (%%writefile, cat > f <<EOF, tee f): key = value lines
        rf"file\b[\s'\",]*(?:-a\s+)?{_CONFIG_FILE}",
        rf">\s*{_CONFIG_FILE}",
        rf"tee\s+(?:-a\s+)?{_CONFIG_FILE}",
    )
)


def is_marked(source: str, tokens: set[str]) -> bool:
    return not tokens.isdisjoint(MARKER_WORDS) or any(p.search(source) for p in SYNTAX)


def marker_lines(code: str, lowered: str, tokens: set[str], starts: list[int]) -> set[int]:
    """1-based lines of ``code`` that hold a marker."""
    found = tokens & MARKER_WORDS
    lines = keyword_lines(code, lowered, [word(w) for w in found], starts) if found else set()
    for pattern in SYNTAX:
        lines.update(line_of(starts, m.start()) for m in pattern.finditer(code))
    return lines
