"""What an admin can do, shared by the JSON admin API and the HTML console: each action
checks its input (``ValueError`` with a sentence for the admin), changes the store, and
emits the admin event (and the webhook for appeals). Store work: call in the pool."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from . import events as E
from .service import GuardService

MAX_TEXT = 5000  # characters of a reason or a note


def emit(
    guard: GuardService, admin: str, action: str, user: str | None, detail: Any = None
) -> None:
    data = {"admin": admin, "action": action, "user": user}
    data["detail"] = json.dumps(detail) if detail is not None else None
    guard.events.emit(E.ADMIN, data)


def parse_expiry(value: Any, now: float | None = None) -> float | None:
    """An expiry from a form or JSON: None / "" (never), seconds since the epoch, an ISO
    date ("2027-01-31": valid through that day, UTC) or date-time (UTC unless it says).
    A time not in the future is refused."""
    now = time.time() if now is None else now
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("expires_at must be a date or seconds since the epoch")
    if isinstance(value, (int, float)):
        ts = float(value)
    elif isinstance(value, str) and len(value) <= 64:
        try:
            if len(value.strip()) == 10:  # a date: through the end of that day
                day = datetime.strptime(value.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
                ts = (day + timedelta(days=1)).timestamp()
            else:
                when = datetime.fromisoformat(value.strip())
                ts = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        except ValueError as err:
            raise ValueError(f"expires_at is not a date: {value!r}") from err
    else:
        raise ValueError("expires_at must be a date or seconds since the epoch")
    if ts <= now:
        raise ValueError("the expiry date has already passed")
    return ts


def check_user(user: Any) -> str:
    if not isinstance(user, str) or not user.strip() or len(user) > 255:
        raise ValueError("user must be a non-empty string of at most 255 characters")
    return user


def grant(
    guard: GuardService,
    admin: str,
    user: Any,
    category: Any,
    rule: Any,
    reason: Any = "",
    expires: Any = None,
) -> int:
    """Grant an exception (category and/or rule of the policy in force)."""
    user = check_user(user)
    cat, rul = category or None, rule or None
    if not (cat or rul):
        raise ValueError("one of category / rule is required")
    for name, value in (("category", cat), ("rule", rul)):
        if value is not None and (not isinstance(value, str) or len(value) > 128):
            raise ValueError(f"{name} must be a string")
    policy = guard.policy
    if policy is not None:
        if cat and cat not in policy.categories:
            raise ValueError(f"unknown category {cat!r}")
        if rul and rul not in {r.id for r in policy.rules}:
            raise ValueError(f"unknown rule {rul!r}")
    expires_at = parse_expiry(expires)
    text = str(reason or "")[:MAX_TEXT]
    xid = guard.store.grant_exception(user, admin, cat, rul, text, expires_at=expires_at)
    guard.refresh_kernel_identities(user)  # reads the store, writes files
    detail = {"id": xid, "category": cat, "rule": rul, "expires_at": expires_at}
    emit(guard, admin, "grant_exception", user, detail)
    return xid


def revoke(guard: GuardService, admin: str, exception_id: int) -> str | None:
    """Revoke an active exception; its user, None when there was none."""
    rows = [x for x in guard.store.exceptions(active=True) if x["id"] == exception_id]
    if not rows or not guard.store.revoke_exception(exception_id, admin):
        return None
    user = str(rows[0]["user"])
    guard.refresh_kernel_identities(user)
    emit(guard, admin, "revoke_exception", user, {"id": exception_id})
    return user


def reset(guard: GuardService, admin: str, user: str) -> None:
    guard.store.reset(check_user(user), by=admin)
    emit(guard, admin, "reset", user)


def answer(
    guard: GuardService, admin: str, appeal_id: int, accept: bool, note: Any = ""
) -> dict[str, Any] | None:
    """Accept (the appealed strike stops counting) or reject an open appeal; the user
    sees the answer and the note on their page. None: no such open appeal."""
    if note is not None and not isinstance(note, str):
        raise ValueError("note must be a string")
    text = (note or "")[:MAX_TEXT]
    row = guard.store.answer_appeal(appeal_id, admin, accept, text)
    if row is None:
        return None
    action = "accept_appeal" if accept else "reject_appeal"
    emit(guard, admin, action, row["user"], {"id": appeal_id, "voided_event": row["voided_event"]})
    notify(guard, "appeal.accepted" if accept else "appeal.rejected", row)
    return row


def notify(guard: GuardService, event: str, appeal: dict[str, Any]) -> None:
    """The webhook (when configured) about an appeal."""
    if guard.webhook is None:
        return
    fields = ("id", "ts", "event_id", "message", "status", "answered_by", "answered_at", "note")
    data = {k: appeal.get(k) for k in fields}
    guard.webhook.send(event, str(appeal["user"]), appeal=data,
                       voided_event=appeal.get("voided_event"))  # fmt: skip
