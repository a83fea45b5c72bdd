"""HTML of the admin console, the user's page and the FAQ.

Every value from the store, the policy or a request goes through ``esc``; every form
posts its ``_xsrf`` token (jupyter_server refuses a form without it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from .escalation import Status
from .render import STYLE, esc, events_table, fmt_time, js, level_sentence

CONSOLE_STYLE = """
nav{display:flex;gap:1rem;border-bottom:1px solid #ddd;padding-bottom:.5rem}
.notice{background:#e6f4ea;padding:.5rem;border-radius:4px}
.status-open{color:#b06000}.status-accepted{color:#137333}.status-rejected{color:#a50e0e}
.voided{color:#5f6368;text-decoration:line-through}
form.inline{display:inline}input[type=text],select{min-width:12rem}
form.grant label{display:inline-block;margin:.2rem .8rem .2rem 0}
.answer{background:#f1f3f4;padding:.4rem;margin:.3rem 0}
"""

# what a rule's action means for the user (FAQ)
ACTION_TEXT = {
    "block": "Not run; counts as a strike.",
    "warn": "You are warned first; running it anyway counts as a strike.",
    "log": "Allowed, but recorded.",
}
# notices after an admin action (POST-redirect-GET: ?done=<key>)
NOTICES = {
    "reset": "The user's strikes were reset.",
    "granted": "The exception was granted.",
    "revoked": "The exception was revoked.",
    "accepted": "The appeal was accepted; the user is told on their page.",
    "rejected": "The appeal was rejected; the user is told on their page.",
}
APPEAL_STATUS = {"open": "waiting for review", "accepted": "accepted", "rejected": "rejected"}


@dataclass(frozen=True)
class Urls:
    """Where the pages and forms are (under the server's base_url)."""

    base: str  # {base_url}colab-guard/

    @property
    def console(self) -> str:
        return self.base + "admin"

    def user(self, name: str) -> str:
        return f"{self.console}/users/{quote(name, safe='')}"

    @property
    def appeals(self) -> str:
        return self.console + "/appeals"

    @property
    def exceptions(self) -> str:
        return self.console + "/exceptions"

    @property
    def faq(self) -> str:
        return self.base + "faq"


def page(service: str, title: str, body: str) -> str:
    """A whole page; its title names the operator's service."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(service)}: {esc(title)}</title>"
        f"<style>{STYLE}{CONSOLE_STYLE}</style></head><body>{body}</body></html>"
    )


def fmt_day(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d") if ts else ""


def xsrf_field(xsrf: str) -> str:
    return f"<input type='hidden' name='_xsrf' value='{esc(xsrf)}'>"


def post_form(action: str, xsrf: str, inner: str, cls: str = "inline") -> str:
    head = f"<form class='{esc(cls)}' method='post' action='{esc(action)}'>"
    return f"{head}{xsrf_field(xsrf)}{inner}</form>"


def nav(urls: Urls, service: str, open_appeals: int | None = None) -> str:
    count = f" ({open_appeals} open)" if open_appeals else ""
    return (
        f"<nav><b>{esc(service)} admin</b><a href='{esc(urls.console)}'>Users</a>"
        f"<a href='{esc(urls.appeals)}'>Appeals{esc(count)}</a>"
        f"<a href='{esc(urls.exceptions)}'>Exceptions</a>"
        f"<a href='{esc(urls.base)}'>My page</a><a href='{esc(urls.faq)}'>FAQ</a></nav>"
    )


def notice(done: str | None) -> str:
    text = NOTICES.get(done or "")
    return f"<p class='notice' role='status'>{esc(text)}</p>" if text else ""


# -- admin console ------------------------------------------------------------------------


def users_page(
    service: str,
    urls: Urls,
    rows: list[dict[str, Any]],
    *,
    total: int,
    page_no: int,
    pages: int,
    search: str,
    open_appeals: int,
) -> str:
    """Users with events: strikes and level, one page of them, searchable by name."""
    trs = "".join(
        f"<tr><td><a href='{esc(urls.user(r['user']))}'>{esc(r['user'])}</a></td>"
        f"<td>{esc(r['strikes'])}</td><td class='level'>{esc(r['level'])}</td>"
        f"<td>{esc(r['events'])}</td><td>{esc(fmt_time(r.get('last_ts')))}</td>"
        f"<td>{esc(fmt_time(r.get('reset_at')))}</td></tr>"
        for r in rows
    )

    def link(n: int, label: str) -> str:
        query = urlencode({"q": search, "page": n} if search else {"page": n})
        return f"<a href='{esc(urls.console)}?{esc(query)}'>{esc(label)}</a>"

    pager = [f"Page {page_no} of {pages} ({total} users)"]
    if page_no > 1:
        pager.insert(0, link(page_no - 1, "< Previous"))
    if page_no < pages:
        pager.append(link(page_no + 1, "Next >"))
    body = (
        nav(urls, service, open_appeals)
        + "<h1>Users</h1>"
        + f"<form method='get' action='{esc(urls.console)}' role='search'>"
        + f"<input type='text' name='q' value='{esc(search)}' placeholder='user name'"
        + " aria-label='Search users'> <button type='submit'>Search</button></form>"
        + "<table><tr><th>User</th><th>Strikes</th><th>Level</th><th>Events</th>"
        + f"<th>Last event</th><th>Last reset</th></tr>{trs}</table>"
        + ("<p>No users.</p>" if not rows else "")
        + f"<p class='pager'>{' '.join(pager)}</p>"
    )
    return page(service, "admin: users", body)


def user_events_table(events: list[dict[str, Any]]) -> str:
    """The events table of the admin view, voided strikes marked."""
    rows = []
    for e in events:
        voided = e.get("voided_at") is not None
        mark = (
            f" <span class='voided-note'>(removed on appeal by {esc(e.get('voided_by'))}, "
            f"{esc(fmt_time(e.get('voided_at')))})</span>"
            if voided
            else ""
        )
        strike = "yes" if e.get("strike") else "no"
        cls = " class='voided'" if voided else ""
        cell = f"<pre>{esc(e.get('cell_text'))}</pre>" if e.get("cell_text") else ""
        ev = f" <code>{esc(e.get('evidence'))}</code>" if e.get("evidence") else ""
        rows.append(
            f"<tr><td>{esc(e.get('id'))}</td><td>{esc(fmt_time(e.get('ts')))}</td>"
            f"<td>{esc(e.get('source'))}</td><td>{esc(e.get('kind'))}</td>"
            f"<td>{esc(e.get('category'))}</td><td>{esc(e.get('rule'))}</td>"
            f"<td{cls}>{strike}</td><td>{esc(e.get('message'))}{ev}{mark}{cell}</td></tr>"
        )
    return (
        "<table><tr><th>#</th><th>Time</th><th>Source</th><th>Kind</th><th>Category</th>"
        f"<th>Rule</th><th>Strike</th><th>Details</th></tr>{''.join(rows)}</table>"
    )


def exception_rows(excs: list[dict[str, Any]], urls: Urls, xsrf: str, with_user: bool) -> str:
    rows = []
    for x in excs:
        button = "<button type='submit'>Revoke</button>"
        revoke = post_form(f"{urls.exceptions}/{int(x['id'])}/revoke", xsrf, button)
        user = f"<td><a href='{esc(urls.user(x['user']))}'>{esc(x['user'])}</a></td>"
        rows.append(
            f"<tr>{user if with_user else ''}<td>{esc(x.get('category'))}</td>"
            f"<td>{esc(x.get('rule'))}</td><td>{esc(x.get('reason'))}</td>"
            f"<td>{esc(x.get('granted_by'))}, {esc(fmt_time(x.get('granted_at')))}</td>"
            f"<td>{esc(fmt_time(x.get('expires_at')) or 'never')}</td><td>{revoke}</td></tr>"
        )
    head = "<th>User</th>" if with_user else ""
    return (
        f"<table><tr>{head}<th>Category</th><th>Rule</th><th>Reason</th><th>Granted</th>"
        f"<th>Expires at</th><th></th></tr>{''.join(rows)}</table>"
        + ("" if excs else "<p>No active exceptions.</p>")
    )


def grant_form(urls: Urls, xsrf: str, policy: Any, user: str | None) -> str:
    """Grant an exception: a category or a rule of the policy in force."""
    cats = "<option value=''>(the rule's)</option>"
    rules = "<option value=''>(the whole category)</option>"
    if policy is not None:
        cats += "".join(
            f"<option value='{esc(c.id)}'>{esc(c.title)} ({esc(c.id)})</option>"
            for c in policy.categories.values()
        )
        rules += "".join(f"<option value='{esc(r.id)}'>{esc(r.id)}</option>" for r in policy.rules)
    who = (
        f"<input type='hidden' name='user' value='{esc(user)}'>"
        if user is not None
        else "<label>User <input type='text' name='user' required maxlength='255'></label> "
    )
    inner = (
        who
        + f"<label>Category <select name='category'>{cats}</select></label> "
        + f"<label>Rule <select name='rule'>{rules}</select></label><br>"
        + "<label>Reason <input type='text' name='reason' maxlength='5000'></label> "
        + "<label>Valid through (a UTC date, optional) <input type='date' name='expires'>"
        + "</label> "
        + "<button type='submit'>Grant exception</button>"
    )
    return post_form(urls.exceptions, xsrf, inner, cls="grant")


def user_page_admin(
    service: str,
    urls: Urls,
    xsrf: str,
    user: str,
    status: Status,
    events: list[dict[str, Any]],
    excs: list[dict[str, Any]],
    appeals: list[dict[str, Any]],
    policy: Any,
    done: str | None,
    open_appeals: int,
) -> str:
    until = f" until {esc(fmt_time(status.until))}" if status.until else ""
    reset = post_form(
        f"{urls.user(user)}/reset", xsrf, "<button type='submit'>Reset strikes</button>"
    )
    body = (
        nav(urls, service, open_appeals)
        + notice(done)
        + f"<h1>User {esc(user)}</h1>"
        + f"<p>Strikes since the last reset: <b>{esc(status.strikes)}</b>. Level: "
        + f"<span class='level'>{esc(status.level)}</span>{until}.</p>{reset}"
        + f"<h2>Exceptions</h2>{exception_rows(excs, urls, xsrf, with_user=False)}"
        + f"<h3>Grant an exception</h3>{grant_form(urls, xsrf, policy, user)}"
        + f"<h2>Appeals</h2>{appeals_table(appeals, urls, xsrf)}"
        + f"<h2>Events</h2>{user_events_table(events)}"
    )
    return page(service, f"admin: {user}", body)


def appeal_answer(a: dict[str, Any]) -> str:
    if a.get("status") == "open":
        return ""
    note = f": {esc(a.get('note'))}" if a.get("note") else ""
    return (
        f"<div class='answer'>{esc(APPEAL_STATUS.get(a['status'], a['status']))} by "
        f"{esc(a.get('answered_by'))}, {esc(fmt_time(a.get('answered_at')))}{note}</div>"
    )


def appeals_table(appeals: list[dict[str, Any]], urls: Urls, xsrf: str) -> str:
    rows = []
    for a in appeals:
        aid = int(a["id"])
        if a.get("status") == "open":
            answer = post_form(
                f"{urls.appeals}/{aid}/accept",
                xsrf,
                f"<textarea name='note' maxlength='5000' placeholder='Note to the user "
                f"(optional)' aria-label='Note for appeal {aid}'></textarea>"
                "<button type='submit'>Accept (remove the strike)</button> "
                f"<button type='submit' formaction='{esc(urls.appeals)}/{aid}/reject'>"
                "Reject</button>",
                cls=f"answer-form appeal-{aid}",
            )
        else:
            answer = appeal_answer(a)
        event = a.get("event")
        about = (
            f"#{esc(event['id'])} {esc(event.get('rule'))} ({esc(fmt_time(event.get('ts')))})"
            if event
            else "(no event named: the latest strike before the appeal)"
        )
        rows.append(
            f"<tr id='appeal-{aid}'><td>{aid}</td><td>{esc(fmt_time(a.get('ts')))}</td>"
            f"<td><a href='{esc(urls.user(a['user']))}'>{esc(a['user'])}</a></td>"
            f"<td>{about}</td><td><pre>{esc(a.get('message'))}</pre></td>"
            f"<td class='status-{esc(a.get('status'))}'>{esc(a.get('status'))}</td>"
            f"<td>{answer}</td></tr>"
        )
    return (
        "<table><tr><th>#</th><th>Sent</th><th>User</th><th>About</th><th>Message</th>"
        f"<th>Status</th><th>Answer</th></tr>{''.join(rows)}</table>"
        + ("" if appeals else "<p>No appeals.</p>")
    )


def appeals_page(
    service: str,
    urls: Urls,
    xsrf: str,
    appeals: list[dict[str, Any]],
    status: str,
    done: str | None,
    open_appeals: int,
) -> str:
    tabs = " | ".join(
        f"<b>{esc(s)}</b>" if s == status else f"<a href='{esc(urls.appeals)}?status={s}'>{s}</a>"
        for s in ("open", "accepted", "rejected", "all")
    )
    body = (
        nav(urls, service, open_appeals)
        + notice(done)
        + f"<h1>Appeals</h1><p>{tabs}</p>"
        + "<p>Accepting removes the appealed strike: the event stays, marked, and no "
        + "longer counts. The user sees the answer and the note on their page.</p>"
        + appeals_table(appeals, urls, xsrf)
    )
    return page(service, "admin: appeals", body)


def exceptions_page(
    service: str,
    urls: Urls,
    xsrf: str,
    excs: list[dict[str, Any]],
    policy: Any,
    done: str | None,
    open_appeals: int,
) -> str:
    body = (
        nav(urls, service, open_appeals)
        + notice(done)
        + "<h1>Exceptions</h1><p>An exception lets a user run what a category or a rule "
        + "prohibits, until it is revoked or its expiry date has passed.</p>"
        + exception_rows(excs, urls, xsrf, with_user=True)
        + "<h2>Grant an exception</h2>"
        + grant_form(urls, xsrf, policy, None)
    )
    return page(service, "admin: exceptions", body)


def error_page(service: str, code: int, reason: str, message: str) -> str:
    body = f"<h1>{esc(code)} {esc(reason)}</h1><p>{esc(message)}</p>"
    return page(service, f"{code} {reason}", body)


# -- the user's own page and the FAQ ---------------------------------------------------------


def my_appeals(appeals: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    if not appeals:
        return "<p>You have sent no appeals.</p>"
    by_id = {e.get("id"): e for e in events}
    rows = []
    for a in appeals:
        ev = by_id.get(a.get("event_id"))
        if ev:
            about = f"{esc(ev.get('rule'))} ({esc(fmt_time(ev.get('ts')))})"
        elif a.get("event_id") is not None:
            about = f"event #{esc(a['event_id'])}"
        else:
            about = "the latest strike before it"
        note = esc(a.get("note")) if a.get("note") else ""
        when = fmt_time(a.get("answered_at"))
        answer = (
            f"{esc(APPEAL_STATUS.get(a['status'], a['status']))} ({esc(when)})"
            f"{': ' + note if note else ''}"
            if a.get("status") != "open"
            else "waiting for review"
        )
        rows.append(
            f"<tr class='appeal-{esc(a.get('status'))}'><td>{esc(fmt_time(a.get('ts')))}</td>"
            f"<td>{about}</td><td><pre>{esc(a.get('message'))}</pre></td>"
            f"<td class='status-{esc(a.get('status'))}'>{esc(a.get('status'))}</td>"
            f"<td>{answer}</td></tr>"
        )
    return (
        "<table id='my-appeals'><tr><th>Sent</th><th>About</th><th>Message</th><th>Status</th>"
        f"<th>Answer</th></tr>{''.join(rows)}</table>"
    )


def user_page(
    *,
    user: str,
    status: Status,
    events: list[dict[str, Any]],
    appeals: list[dict[str, Any]],
    service: str,
    faq_url: str,
    appeals_api: str,
    xsrf: str,
    show_evidence: bool,
    console_url: str | None,
) -> str:
    """The user's standing, events (strikes removed on appeal marked), appeals with the
    admins' answers, and the appeal form (which strike it is about)."""
    shown = [
        {**e, "message": f"{e.get('message') or ''} [strike removed on appeal]"}
        if e.get("voided_at") is not None
        else e
        for e in events
    ]
    options = "".join(
        f"<option value='{int(e['id'])}'>{esc(fmt_time(e.get('ts')))} {esc(e.get('category'))}"
        f" / {esc(e.get('rule'))}</option>"
        for e in events
        if e.get("strike") and e.get("voided_at") is None and e.get("id") is not None
    )
    admin = (
        f"<p>You are an administrator: <a href='{esc(console_url)}'>admin console</a>.</p>"
        if console_url
        else ""
    )
    body = (
        f"<h1>Your standing on {esc(service)}</h1>{admin}"
        f"<p>User: <b>{esc(user)}</b></p>"
        f"<p>Strikes since the last review: <b>{esc(status.strikes)}</b>. "
        f"Level: <span class='level'>{esc(status.level)}</span>.</p>"
        f"<p>{esc(level_sentence(status, service))}</p>"
        f"<p>The prohibited actions on {esc(service)} are listed in the "
        f"<a href='{esc(faq_url)}'>FAQ</a>.</p>"
        f"<h2>Events</h2>{events_table(shown, show_evidence, show_evidence)}"
        f"<h2>Your appeals</h2>{my_appeals(appeals, events)}"
        "<h2 id='appeal'>Appeal</h2><p>If a warning was a false positive, explain what you "
        "were doing. An administrator will review it; the answer appears above.</p>"
        "<form id='appeal-form'><label>Strike <select name='event_id'>"
        f"<option value=''>(the latest)</option>{options}</select></label>"
        "<textarea name='message' required maxlength='5000' aria-label='Appeal message'>"
        "</textarea><p><button type='submit'>Send appeal</button> <span id='appeal-status'>"
        "</span></p></form>"
        "<script>document.getElementById('appeal-form').addEventListener('submit',async e=>{"
        "e.preventDefault();const f=e.target;const body={message:f.message.value};"
        "if(f.event_id.value)body.event_id=parseInt(f.event_id.value,10);"
        "const r=await fetch(" + js(appeals_api) + ",{method:'POST',"
        "headers:{'Content-Type':'application/json','X-XSRFToken':" + js(xsrf) + "},"
        "body:JSON.stringify(body)});const s=document.getElementById('appeal-status');"
        "if(r.ok){s.textContent='Sent.';location.reload();}"
        "else{s.textContent='Failed ('+r.status+')';}"
        "});</script>"
    )
    return page(service, "your standing", body)


def faq_page(policy: Any, service: str) -> str:
    """One section per category (anchor = its id), each rule with its own action."""
    parts = [f"<h1>Prohibited actions on {esc(service)}</h1>"]
    if policy is None:
        parts.append("<p>The policy is not available right now.</p>")
        return page(service, "prohibited actions", "".join(parts))
    by_cat: dict[str, list[Any]] = {}
    for rule in policy.rules:
        by_cat.setdefault(rule.category, []).append(rule)
    parts.append("<ul>")
    for cat in policy.categories.values():
        parts.append(f"<li><a href='#{esc(cat.id)}'>{esc(cat.title)}</a></li>")
    parts.append("</ul>")
    for cat in policy.categories.values():
        parts.append(
            f"<section id='{esc(cat.id)}'><h2>{esc(cat.title)}</h2><p>{esc(cat.description)}</p>"
            "<table><tr><th>What</th><th>What happens</th></tr>"
        )
        for rule in by_cat.get(cat.id, []):
            tiers = f" (on the {esc(', '.join(rule.tiers))} tier)" if rule.tiers else ""
            what = ACTION_TEXT.get(rule.action, rule.action)
            parts.append(
                f"<tr id='rule-{esc(rule.id)}'><td>{esc(rule.message)}</td>"
                f"<td class='action-{esc(rule.action)}'>{esc(what)}{tiers}</td></tr>"
            )
        parts.append("</table></section>")
    return page(service, "prohibited actions", "".join(parts))
