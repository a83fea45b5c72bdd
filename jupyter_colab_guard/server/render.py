"""HTML and text rendering. Everything user-controlled goes through ``esc``."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from .escalation import Status

STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#202124}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;
text-align:left;vertical-align:top}pre{white-space:pre-wrap;background:#f6f6f6;padding:.4rem}
.level{font-weight:bold}textarea{width:100%;min-height:6rem}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def js(value: Any) -> str:
    """A JSON literal safe inside <script>."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def strikes_text(n: int) -> str:
    return f"{n} strike{'s' if n != 1 else ''}"


def level_sentence(status: Status, service: str) -> str:
    """How the user's use is affected, in the Colab way ("may be limited"). Never
    "strike 0": with no strikes it only says what repeated violations lead to."""
    if status.level == "suspended":
        return (
            f"Your use of {service} is suspended: kernels and executions are refused "
            "until an administrator reviews your account."
        )
    if status.level == "restricted":
        if status.until:
            return (
                f"Your use of {service} is restricted until {fmt_time(status.until)}: "
                "every execution is refused until then."
            )
        return (
            f"Your use of {service} is restricted: every execution is refused until an "
            "administrator resets it."
        )
    if status.strikes > 0 and status.next_level and status.strikes_to_next is not None:
        n = status.strikes_to_next
        what = "suspended" if status.next_level == "suspended" else "limited"
        return (
            f"You have {strikes_text(status.strikes)}. After {n} more, your use of "
            f"{service} will be {what}."
        )
    return f"Repeated violations may limit your use of {service}."


def consequence(status: Status, service: str) -> str:
    """What "Run anyway" on a warn cell leads to (the strike counts only then)."""
    text = f"Running it anyway counts as a strike (you have {strikes_text(status.strikes)})."
    if status.level in ("restricted", "suspended", "unknown") or not status.next_level:
        return text if status.level != "unknown" else "Running it anyway counts as a strike."
    limits = {"restricted": "limited", "suspended": "suspended"}
    if status.strikes_to_next == 1 and status.next_level in limits:
        return f"{text} Your use of {service} would then be {limits[status.next_level]}."
    return text


# -- the warning shown in the notebook ----------------------------------------------

HEADS = {
    "block": "This code was not run.",
    "warn": "This code has not run yet. Run it anyway, or cancel it.",
    "restricted": "This code was not run.",
    "suspended": "This code was not run.",
    "unavailable": "This code was not run: the acceptable-use check is unavailable.",
    "too_large": "This code was not run: the cell is too large to be checked.",
    "timeout": "This code was not run: it is too large or too complex to be checked in time. "
    "Split it into smaller cells.",
    "runtime": "A process this notebook started was stopped.",
    "unguarded": "This code was not run: this kernel has no working acceptable-use guard. "
    "Restart the kernel.",
}


def refusal(d: dict[str, Any]) -> tuple[str, str]:
    """(HTML, text) of a refused execution: the same standard warning the kernel guard
    shows (kernel/warning.py), plus the user's escalation step.

    ``d``: message (rendered), service, reason, findings (dicts), status (Status),
    faq_url, appeal_url, show_evidence."""
    from ..kernel.warning import render_warning

    status: Status = d["status"]
    message, findings = d["message"], d["findings"]
    standing = level_sentence(status, d["service"])
    if d["reason"] in ("restricted", "suspended"):
        # refused for the user's standing, whatever the cell holds: say so, not
        # "disallowed code"
        message, findings, standing = standing, [], ""
    elif d["reason"] == "warn":
        standing = consequence(status, d["service"])
    html_text, text = render_warning(
        findings,
        message=message,
        faq_url=d["faq_url"],
        appeal_url=d["appeal_url"],
        show_evidence=bool(d.get("show_evidence")),
        note=HEADS.get(d["reason"], "This code was not run."),
        standing=standing,
    )
    return html_text, text


# -- what the JupyterLab extension's dialog shows ---------------------------------------


def dialog_fields(d: dict[str, Any]) -> dict[str, Any]:
    """What the JupyterLab extension (``labextension/``) shows in its dialog, as data:
    the same texts as the in-output warning, with each rule's own sentence, the user's
    strikes and the end of a restriction (seconds since the epoch; the browser shows it
    in local time). The frontend only displays these; it decides nothing.

    ``d``: the view ``refusal`` takes (a runtime notice's ``detail`` may be added)."""
    from ..kernel.warning import category_link

    status: Status = d["status"]
    service = d["service"]
    findings: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for f in d["findings"]:
        key = (str(f.get("category") or ""), str(f.get("rule") or ""))
        if key in seen:
            continue
        seen.add(key)
        findings.append(
            {
                "category": key[0],
                "title": str(f.get("title") or key[0]),
                "rule": key[1],
                "reason": str(f.get("message") or ""),
                "action": str(f.get("action") or ""),
                "line": f.get("line") or None,
                "evidence": str(f.get("evidence") or "")[:200] if d.get("show_evidence") else "",
                "faq_url": category_link(d["faq_url"], key[0]),
            }
        )
    next_step = ""
    if d["reason"] == "warn":
        next_step = consequence(status, service)
    elif status.level not in ("restricted", "suspended") and status.next_level:
        n = status.strikes_to_next
        what = "suspended" if status.next_level == "suspended" else "limited"
        if n:
            next_step = (
                f"After {n} more strike{'s' if n != 1 else ''}, your use of {service} "
                f"will be {what}."
            )
    message = d["message"]
    if d["reason"] in ("restricted", "suspended"):
        message = level_sentence(status, service)
    return {
        "reason": d["reason"],
        "service": service,
        "message": message,
        "note": HEADS.get(d["reason"], "This code was not run."),
        "findings": findings,
        "level": status.level,
        "strikes": status.strikes if status.level != "unknown" else None,
        "until": status.until,
        "standing": level_sentence(status, service),
        "next": next_step,
        "detail": str(d.get("detail") or ""),
        "faq_url": d["faq_url"],
        "appeal_url": d["appeal_url"],
    }


# -- pages -------------------------------------------------------------------------------


def events_table(
    events: list[dict[str, Any]], show_cell: bool = True, show_evidence: bool = True
) -> str:
    rows = []
    for e in events:
        cell = f"<pre>{esc(e.get('cell_text'))}</pre>" if show_cell and e.get("cell_text") else ""
        ev = e.get("evidence") if show_evidence else None
        ev_html = f" <code>{esc(ev)}</code>" if ev else ""
        rows.append(
            f"<tr><td>{esc(fmt_time(e.get('ts')))}</td><td>{esc(e.get('kind'))}</td>"
            f"<td>{esc(e.get('category'))}</td><td>{esc(e.get('rule'))}</td>"
            f"<td>{esc(e.get('action'))}</td><td>{esc(e.get('message'))}"
            f"{ev_html}"
            f"{cell}</td></tr>"
        )
    return (
        "<table><tr><th>Time</th><th>Kind</th><th>Category</th><th>Rule</th><th>Action</th>"
        f"<th>Details</th></tr>{''.join(rows)}</table>"
    )
