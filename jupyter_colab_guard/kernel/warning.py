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


def _field(f: Any, name: str) -> Any:
    return f.get(name) if isinstance(f, dict) else getattr(f, name, None)


@dataclass
class _Group:
    """The findings of one category: the rules' own sentences, lines and evidence."""

    title: str
    category: str
    reasons: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


def _groups(findings: list[Any]) -> list[_Group]:
    """One group per category, in order of appearance."""
    out: dict[str, _Group] = {}
    for f in findings:
        category = str(_field(f, "category") or "")
        title = str(_field(f, "title") or category)
        group = out.setdefault(title, _Group(title, category))
        reason = str(_field(f, "message") or "").strip()
        if reason and reason not in group.reasons:
            group.reasons.append(reason)
        line = _field(f, "line")
        if line and line not in group.lines:
            group.lines.append(int(line))
        ev = _field(f, "evidence")
        if ev and ev not in group.evidence:
            group.evidence.append(str(ev))
    for group in out.values():
        group.lines.sort()
    return list(out.values())


def category_link(faq_url: str, category: str) -> str:
    """The FAQ anchor of a category (the server's FAQ has one section per category);
    a FAQ URL that already has a fragment is used as it is."""
    if not faq_url or not category or "#" in faq_url:
        return faq_url
    return f"{faq_url}#{category}"


def render_warning(
    findings: list[Any],
    *,
    message: str,
    faq_url: str = "",
    appeal_url: str = "",
    show_evidence: bool = False,
    note: str = "",
    standing: str = "",
) -> tuple[str, str]:
    """The standard warning as (HTML, plain text), shared by the kernel guard and the
    server's refusal. ``findings``: objects or dicts with category, title, line and
    evidence; ``note``: what happened to the cell; ``standing``: the user's escalation
    step (server only). Everything is escaped in the HTML."""
    e = html.escape
    items: list[str] = []
    text_items: list[str] = []
    for group in _groups(findings):
        lines, evidence = group.lines, group.evidence
        where = ""
        if lines:
            where = (
                (" (line " if len(lines) == 1 else " (lines ")
                + ", ".join(str(n) for n in lines)
                + ")"
            )
        # the rules' own sentences say why
        why = (": " + " ".join(group.reasons)) if group.reasons else ""
        link = category_link(faq_url, group.category)
        label = f"<b>{e(group.title)}</b>"
        if link:
            label = f'<a href="{e(link)}" target="_blank" rel="noopener">{label}</a>'
        item = f"<li>{label}{e(why)}{e(where)}"
        text_item = f"  - {group.title}{why}{where}"
        if show_evidence and evidence:
            item += ": " + ", ".join(f"<code>{e(x[:200])}</code>" for x in evidence[:3])
            text_item += ": " + ", ".join(x[:200] for x in evidence[:3])
        items.append(item + "</li>")
        text_items.append(text_item)
    links: list[str] = []
    text_links: list[str] = []
    if faq_url:
        links.append(
            f'<a href="{e(faq_url)}" target="_blank" rel="noopener">Prohibited actions (FAQ)</a>'
        )
        text_links.append(f"FAQ: {faq_url}")
    if appeal_url:
        links.append(f'<a href="{e(appeal_url)}" target="_blank" rel="noopener">File an appeal</a>')
        text_links.append(f"Appeal: {appeal_url}")
    parts = [f'<div class="colab-guard-warning" role="alert" style="{_STYLE}">']
    parts.append(f"<p><b>&#9888; {e(message)}</b></p>")
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    if note:
        parts.append(f"<p>{e(note)}</p>")
    if standing:
        parts.append(f"<p>{e(standing)}</p>")
    if links:
        parts.append("<p>" + " &middot; ".join(links) + "</p>")
    parts.append("</div>")
    text = [f"Warning: {message}", *text_items]
    if note:
        text.append(note)
    if standing:
        text.append(standing)
    text.extend(text_links)
    return "".join(parts), "\n".join(text)


def build_notice(findings: list[Any], settings: KernelGuard, note: str = "") -> Notice:
    """Render the warning for these findings (``note``: one extra sentence)."""
    html_text, text = render_warning(
        findings,
        message=settings.rendered_message(),
        faq_url=settings.faq_url,
        appeal_url=settings.appeal_url,
        show_evidence=settings.show_evidence,
        note=note,
    )
    return Notice(html=html_text, text=text)
