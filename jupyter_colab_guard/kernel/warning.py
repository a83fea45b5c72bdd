"""The standard warning, as HTML (escaped) and plain text."""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from typing import Any

from .config import KernelGuard

_STYLE = (
    "border:1px solid #f9ab00;border-left:6px solid #f9ab00;background:#fef7e0;"
    "color:#202124;padding:8px 14px;margin:4px 0;border-radius:4px;font-family:sans-serif"
)


@dataclass
class Notice:
    """A rendered warning; shown at most once however often IPython asks."""

    html: str
    text: str
    shown: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def show(self) -> None:
        with self._lock:
            if self.shown:
                return
            self.shown = True
        from IPython.display import display

        display({"text/html": self.html, "text/plain": self.text}, raw=True)


def _groups(findings: list[Any]) -> list[tuple[str, list[int], list[str]]]:
    """(title, line numbers, evidence) per category, in order of first appearance."""
    out: dict[str, tuple[list[int], list[str]]] = {}
    for f in findings:
        title = f.title or f.category
        lines, evidence = out.setdefault(title, ([], []))
        if f.line and f.line not in lines:
            lines.append(f.line)
        if f.evidence and f.evidence not in evidence:
            evidence.append(f.evidence)
    return [(t, sorted(ls), ev) for t, (ls, ev) in out.items()]


def build_notice(findings: list[Any], settings: KernelGuard, note: str = "") -> Notice:
    """Render the warning for these findings (``note``: one extra sentence)."""
    message = settings.rendered_message()
    groups = _groups(findings)
    e = html.escape
    items: list[str] = []
    text_items: list[str] = []
    for title, lines, evidence in groups:
        where = ""
        if lines:
            where = (
                (" (line " if len(lines) == 1 else " (lines ")
                + ", ".join(str(n) for n in lines)
                + ")"
            )
        item = f"<li><b>{e(title)}</b>{e(where)}"
        text_item = f"  - {title}{where}"
        if settings.show_evidence and evidence:
            item += ": " + ", ".join(f"<code>{e(x[:200])}</code>" for x in evidence[:3])
            text_item += ": " + ", ".join(x[:200] for x in evidence[:3])
        items.append(item + "</li>")
        text_items.append(text_item)
    links: list[str] = []
    text_links: list[str] = []
    if settings.faq_url:
        links.append(
            f'<a href="{e(settings.faq_url)}" target="_blank" rel="noopener">'
            "Prohibited actions (FAQ)</a>"
        )
        text_links.append(f"FAQ: {settings.faq_url}")
    if settings.appeal_url:
        links.append(
            f'<a href="{e(settings.appeal_url)}" target="_blank" rel="noopener">File an appeal</a>'
        )
        text_links.append(f"Appeal: {settings.appeal_url}")
    parts = [f'<div class="colab-guard-warning" role="alert" style="{_STYLE}">']
    parts.append(f"<p><b>&#9888; {e(message)}</b></p>")
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    if note:
        parts.append(f"<p>{e(note)}</p>")
    if links:
        parts.append("<p>" + " &middot; ".join(links) + "</p>")
    parts.append("</div>")
    text = [f"Warning: {message}", *text_items]
    if note:
        text.append(note)
    text.extend(text_links)
    return Notice(html="".join(parts), text="\n".join(text))
