"""Magics the analyzer cannot resolve on its own.

The analyzer reads a cell's text; it cannot know that ``%%mycap`` was made by
``%alias_magic mycap capture`` or that ``%foo`` is a user ``%alias`` for a shell
command, nor what a ``%run`` file holds. Here the live shell resolves those names
and the equivalent text is handed back for analysis (``derived_texts``), and the
few magics whose input only exists at run time are wrapped (``wrap_magic``).
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MagicCheck = Callable[[str, str, str, "str | None"], None]

# magics whose argument/body is itself cell code
BODY_CELL_MAGICS = frozenset({"capture", "time", "timeit", "prun", "debug"})
BODY_LINE_MAGICS = frozenset({"time", "timeit", "prun", "debug"})
# magics wrapped at run time (their input may be built while the cell runs)
RUNTIME_LINE_MAGICS = frozenset({"run"})
RUNTIME_CELL_MAGICS = frozenset(
    {"bash", "sh", "script", "perl", "ruby", "python", "python2", "python3", "pypy", "!"}
)
MAX_FILE = 2_000_000
MAX_DEPTH = 4
_CALL = re.compile(r"\.run_(line|cell)_magic\(\s*['\"]([^'\"]+)['\"]")
_RUN_OPTS_WITH_VALUE = frozenset("NbDlsTm")


@dataclass(frozen=True)
class Derived:
    """Text to analyse in place of a magic call, and where its line 1 sits in the cell."""

    text: str
    line: int  # cell line of the derived text's line 1
    collapse: bool = False  # report every finding at ``line`` (file contents)
    origin: str = ""


def resolve(shell: Any, kind: str, name: str) -> tuple[str, str, str, Any]:
    """Follow %alias_magic aliases: (kind, name, extra params, magic object)."""
    from IPython.core.magic import MagicAlias

    params = ""
    fn = _find(shell, kind, name)
    for _ in range(8):
        if not isinstance(fn, MagicAlias):
            break
        kind, name = fn.magic_kind, fn.magic_name
        params = f"{fn.magic_params or ''} {params}".strip()
        fn = _find(shell, kind, name)
    return kind, name, params, fn


def _find(shell: Any, kind: str, name: str) -> Any:
    try:
        return shell.find_cell_magic(name) if kind == "cell" else shell.find_line_magic(name)
    except Exception:
        return None


def expand_alias(alias: Any, rest: str) -> str:
    """The command a shell alias (``%alias``) runs for ``rest`` (IPython's Alias.__call__)."""
    cmd, nargs = str(alias.cmd), int(getattr(alias, "nargs", 0) or 0)
    if "%l" in cmd:
        cmd, rest = cmd.replace("%l", rest), ""
    if nargs == 0:
        return f"{cmd.replace('%%s', '%s')} {rest}".strip()
    args = rest.split(None, nargs)
    try:
        return f"{cmd % tuple(args[:nargs])} {' '.join(args[nargs:])}".strip()
    except (TypeError, ValueError):
        return f"{cmd} {rest}".strip()


def run_target(shell: Any, arg_s: str) -> str | None:
    """The file ``%run arg_s`` would run, or None."""
    try:
        parts = shlex.split(arg_s, posix=os.name != "nt")
    except ValueError:
        parts = arg_s.split()
    i = 0
    module = None
    while i < len(parts) and parts[i].startswith("-") and len(parts[i]) > 1:
        opt = parts[i][1:]
        if opt and opt[-1] in _RUN_OPTS_WITH_VALUE and len(opt) == 1:
            if opt == "m" and i + 1 < len(parts):
                module = parts[i + 1]
            i += 2
            continue
        if opt.startswith("m") and len(opt) > 1:
            module = opt[1:]
        i += 1
    if module:
        try:
            import importlib.util

            spec = importlib.util.find_spec(module)
            return spec.origin if spec and spec.origin else None
        except Exception:
            return None
    if i >= len(parts):
        return None
    name = os.path.expanduser(parts[i])
    for cand in (name, name + ".py", name + ".ipy"):
        if os.path.isfile(cand):
            return cand
    return None


def file_source(path: str) -> str | None:
    """Code of a .py/.ipy file, or the code cells of a .ipynb."""
    try:
        if os.path.getsize(path) > MAX_FILE:
            return None
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    if path.endswith(".ipynb"):
        try:
            cells = json.loads(text).get("cells", [])
            return "\n".join(
                "".join(c.get("source", "")) if isinstance(c.get("source"), list)
                else str(c.get("source", ""))
                for c in cells
                if c.get("cell_type") == "code"
            )  # fmt: skip
        except Exception:
            return text
    return text


def _interesting(shell: Any, kind: str, name: str) -> bool:
    from IPython.core.alias import Alias
    from IPython.core.magic import MagicAlias

    fn = _find(shell, kind, name)
    if isinstance(fn, MagicAlias | Alias):
        return True
    body = BODY_CELL_MAGICS if kind == "cell" else BODY_LINE_MAGICS
    return name in body or name == "run"


def _calls(transformed: str) -> list[tuple[str, str, str, str, int]]:
    """Literal magic calls in transformed text: (kind, name, line, body, lineno)."""
    try:
        tree = ast.parse(transformed)
    except (SyntaxError, ValueError):
        return []
    out: list[tuple[str, str, str, str, int]] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        kind = {"run_line_magic": "line", "run_cell_magic": "cell"}.get(node.func.attr)
        if kind is None:
            continue
        args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
        need = 3 if kind == "cell" else 2
        if len(args) < need or not all(isinstance(a, str) for a in args[:need]):
            continue
        body = args[2] if kind == "cell" else ""
        out.append((kind, args[0], args[1], body, node.lineno))
    return out


def derived_texts(shell: Any, transformed: str, depth: int = 0) -> list[Derived]:
    """Equivalent texts for aliased magics, magic bodies and %run files in a cell."""
    if depth > MAX_DEPTH or "_magic(" not in transformed:
        return []
    names = _CALL.findall(transformed)
    if not any(_interesting(shell, k, n) for k, n in names):
        return []
    from IPython.core.alias import Alias

    out: list[Derived] = []
    for kind, name, line, body, lineno in _calls(transformed):
        tkind, target, params, fn = resolve(shell, kind, name)
        args = f"{params} {line}".strip()
        if tkind == "cell":
            if (target, params) != (name, ""):
                out.append(Derived(f"%%{target} {args}\n{body}", lineno, origin=f"%%{name}"))
            if target in BODY_CELL_MAGICS:
                out.append(Derived(body, lineno + 1, origin=f"%%{name} body"))
                out.extend(_nested(shell, body, lineno + 1, depth))
            continue
        if isinstance(fn, Alias):
            out.append(Derived(f"!{expand_alias(fn, line)}", lineno, True, f"%{name}"))
        elif (target, params) != (name, ""):
            out.append(Derived(f"%{target} {args}", lineno, True, f"%{name}"))
        if target in BODY_LINE_MAGICS:
            out.append(Derived(args, lineno, True, f"%{name} statement"))
            out.extend(_nested(shell, args, lineno, depth, collapse=True))
        elif target == "run":
            path = run_target(shell, args)
            src = file_source(path) if path else None
            if src is not None:
                out.append(Derived(src, lineno, True, f"%run {path}"))
    return out


def _nested(shell: Any, code: str, line: int, depth: int, collapse: bool = False) -> list[Derived]:
    """Derived texts inside a magic body (transformed without the shell's own hooks)."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        inner = TransformerManager().transform_cell(code)
    except Exception:
        return []
    return [
        Derived(
            d.text, line + d.line - 1 if not collapse else line, d.collapse or collapse, d.origin
        )
        for d in derived_texts(shell, inner, depth + 1)
    ]


# -- run-time wrappers ---------------------------------------------------------
def wrap_magic(check: MagicCheck, kind: str, name: str, fn: Any) -> Any:
    """A registry entry that checks the magic's real input just before it runs."""

    if kind == "line":

        @functools.wraps(fn)
        def line_magic(*args: Any, **kwargs: Any) -> Any:
            check("line", name, args[0] if args else kwargs.get("parameter_s", ""), None)
            return fn(*args, **kwargs)

        wrapper = line_magic
    else:

        @functools.wraps(fn)
        def cell_magic(*args: Any, **kwargs: Any) -> Any:
            line = args[0] if args else kwargs.get("line", "")
            cell = args[1] if len(args) > 1 else kwargs.get("cell", "")
            check("cell", name, line, cell)
            return fn(*args, **kwargs)

        wrapper = cell_magic
    wrapper.__colab_guard_original__ = fn  # type: ignore[attr-defined]
    return wrapper
