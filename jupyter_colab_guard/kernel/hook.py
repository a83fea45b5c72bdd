"""The doors a cell comes through: transformers, do_execute, user_expressions, magics.

Raising from ``input_transformers_post`` stops the cell (execute_reply status
"error") and the transformer stays registered, so a guard error fails closed.
A cleanup transformer stashes the raw cell so the analyzer sees IPython syntax and
the line numbers the user sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .errors import ProhibitedCodeError
from .guard import Guard, sha256
from .magics import Derived, derived_texts, file_source, run_target

Lines = list[str]


def make_transformers(guard: Guard) -> tuple[Callable[[Lines], Lines], Callable[[Lines], Lines]]:
    """(cleanup stash, post check) transformers bound to this guard."""

    def colab_guard_stash(lines: Lines) -> Lines:
        guard.local.raw = "".join(lines)
        return lines

    # check_complete (is_complete_request) skips cleanup transforms with side effects
    colab_guard_stash.has_side_effects = True  # type: ignore[attr-defined]

    def colab_guard_check(lines: Lines) -> Lines:
        raw = getattr(guard.local, "raw", None)
        guard.local.raw = None
        transformed = "".join(lines)
        guard.tamper_quick()
        check_cell(guard, raw if raw is not None else transformed, transformed)
        return lines

    return colab_guard_stash, colab_guard_check


def _relocate(finding: Any, d: Derived) -> Any:
    line = d.line if d.collapse else d.line + max(int(finding.line or 1), 1) - 1
    try:
        return dataclasses.replace(finding, line=line)
    except TypeError:
        return finding


def cell_findings(guard: Guard, source: str, transformed: str) -> list[Any]:
    """Findings of the cell plus of what its magics resolve to in the live shell."""
    if guard.session is None:
        return guard.analyse(source)
    findings = guard.analyse(source)
    stripped = source.strip()
    if (
        "\n" not in stripped
        and not stripped.startswith(("%", "!"))
        and ("run_line_magic(" in transformed and "run_line_magic(" not in source)
    ):
        findings += guard.analyse("%" + stripped)  # automagic: `pip install x`
    if guard.foreign:  # other transformers may have changed what runs
        findings += guard.analyse(transformed)
    for d in derived_texts(guard.shell, transformed):
        findings += [_relocate(f, d) for f in guard.analyse(d.text)]
    seen: set[tuple[str, int, str]] = set()
    out = []
    for f in findings:
        k = (f.rule, f.line, f.evidence)
        if k not in seen:
            seen.add(k)
            out.append(f)
    return out


def check_cell(guard: Guard, source: str, transformed: str) -> None:
    if not source.strip():
        return
    code = getattr(guard.local, "code", None)
    same = code is not None and code.rstrip("\n") == source.rstrip("\n")
    cell_hash = sha256(code if same else source)
    st = guard.state()
    if not st.cell_hash:
        st.cell_hash = cell_hash
    guard.enforce(
        "cell:" + sha256(source),
        lambda: cell_findings(guard, source, transformed),
        cell_hash=cell_hash,
    )


def check_magic_call(guard: Guard, kind: str, name: str, line: str, cell: str | None) -> None:
    """Run-time check of a wrapped magic's real input (files, built bodies)."""
    if kind == "line":
        path = run_target(guard.shell, line)
        text = file_source(path) if path else None
        if text is None:
            return
        detail = f"%run {path}"
    else:
        text, detail = f"%%{name} {line}\n{cell or ''}", f"%%{name}"
    st = guard.state()
    guard.enforce(
        "magic:" + sha256(text),
        lambda: guard.analyse(text),
        cell_hash=st.cell_hash,
        loose=True,
        detail=detail,
    )


def check_expression(guard: Guard, expr: str) -> dict[str, Any] | None:
    """None when the user expression may be evaluated, else its error reply."""
    h = sha256(expr)
    try:
        guard.enforce(
            "expr:" + h,
            lambda: guard.analyse(expr),
            cell_hash=h,
            interactive=False,
            detail="user_expressions",
        )
    except ProhibitedCodeError as err:
        return {"status": "error", "ename": type(err).__name__, "evalue": str(err), "traceback": []}
    return None


def wrap_user_expressions(guard: Guard, orig: Callable[[dict[str, str]], dict[str, Any]]) -> Any:
    """``shell.user_expressions`` evaluates without transformers: check each first."""

    def user_expressions(expressions: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, expr in (expressions or {}).items():
            refused = check_expression(guard, str(expr))
            out[key] = refused if refused is not None else orig({key: expr}).get(key)
        return out

    user_expressions.__colab_guard_original__ = orig  # type: ignore[attr-defined]
    return user_expressions


def wrap_do_execute(guard: Guard, orig: Callable[..., Any]) -> Any:
    """Integrity check (and repair) before ipykernel transforms the cell."""

    async def do_execute(*args: Any, **kwargs: Any) -> Any:
        code = kwargs.get("code", args[0] if args else "")
        guard.local.code = code if isinstance(code, str) else None
        guard.local.raw = None
        guard.tamper_full()
        try:
            guard.refresh_identity()
        except Exception:
            pass
        guard.follow_policy()  # the version the server marked on this request
        try:
            return await orig(*args, **kwargs)
        finally:
            guard.local.code = None

    do_execute.__colab_guard_original__ = orig  # type: ignore[attr-defined]
    return do_execute
