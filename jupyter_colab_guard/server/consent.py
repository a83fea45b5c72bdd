"""Consent to a ``warn`` cell: the one-use tokens of the dialog round trip, the outcome
of the kernel's text prompt, and the trusted consent field the kernel reads.

Dialog round trip (a frontend that declared ``metadata.colab_guard.dialogs``): the server
holds the execute_request, records ``warned`` (no strike) and sends the dialog with a
token. ``POST colab-guard/api/consent`` with the token and "run" or "cancel" answers it:
the token names no cell, it releases the one request the server holds for it, and only
for the user the server resolved for that request. No dialogs (classic clients,
nbclient): the request goes on and the kernel asks in the output; ``PromptWatch`` follows
the answer on the websocket (docs/server.md, "Consent to a warn cell").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..kernel.consent import PROMPT, RUN_ANSWERS
from .settings import GuardSettings

# metadata.colab_guard keys a client may send; every other one is dropped on the way in
CLIENT_KEYS = frozenset({"dialogs"})
ENAME = "ProhibitedCodeError"


class ConsentError(Exception):
    """An answer refused (HTTP status, reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(eq=False)  # hashable by identity: a connection keeps a set of them
class Held:
    """A warn request held until its user answers the dialog."""

    digest: str
    user: str
    kernel_id: str
    cell_hash: str
    rules: tuple[str, ...]
    expires: float
    answer: asyncio.Future[str]


class ConsentBook:
    """The held requests, by token digest (event loop only)."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings  # consent_timeout, read at each hold
        self._held: dict[str, Held] = {}

    def hold(
        self, user: str, kernel_id: str, cell_hash: str, rules: tuple[str, ...]
    ) -> tuple[str, Held]:
        """A new one-use token for one held request (kept only hashed)."""
        token = secrets.token_urlsafe(32)
        held = Held(
            _digest(token),
            user,
            kernel_id,
            cell_hash,
            rules,
            time.time() + self.settings.consent_timeout,
            asyncio.get_running_loop().create_future(),
        )
        self._held[held.digest] = held
        return token, held

    def release(self, held: Held) -> None:
        """The request is no longer held (answered, expired or its connection closed)."""
        self._held.pop(held.digest, None)
        if not held.answer.done():
            held.answer.set_result("closed")

    def answer(self, token: Any, user: str, choice: Any) -> Held:
        """Answer a held request. Unknown, used or expired token: 404/410; a token of
        another user: 403, and the request stays held for its own user."""
        if choice not in ("run", "cancel"):
            raise ConsentError(400, "choice must be 'run' or 'cancel'")
        if not isinstance(token, str) or not token or len(token) > 200:
            raise ConsentError(400, "token is required")
        digest = _digest(token)
        held = self._held.get(digest)
        if held is None or not hmac.compare_digest(held.digest, digest):
            raise ConsentError(404, "unknown or already used consent token")
        if held.user != user:
            raise ConsentError(403, "this consent token belongs to another user")
        if time.time() > held.expires:
            self.release(held)
            raise ConsentError(410, "this consent token has expired")
        self._held.pop(digest, None)
        if not held.answer.done():
            held.answer.set_result(choice)
        return held

    def __len__(self) -> int:
        return len(self._held)


def client_metadata(metadata: Any) -> tuple[dict[str, Any] | None, bool]:
    """(metadata to forward, or None when it may pass unchanged; whether the client
    declared it shows dialogs). Only ``CLIENT_KEYS`` of ``colab_guard`` survive: a
    consent field can only come from the server."""
    if not isinstance(metadata, dict) or "colab_guard" not in metadata:
        return None, False
    theirs = metadata["colab_guard"]
    kept = {k: v for k, v in theirs.items() if k in CLIENT_KEYS} if isinstance(theirs, dict) else {}
    dialogs = kept.get("dialogs") is True
    if isinstance(theirs, dict) and kept == theirs:
        return None, dialogs
    out = {k: v for k, v in metadata.items() if k != "colab_guard"}
    if kept:
        out["colab_guard"] = kept
    return out, dialogs


def granted_metadata(metadata: Any, held: Held) -> dict[str, Any]:
    """The metadata forwarded with a consented request: the server's consent field,
    which the kernel guard trusts because the server drops any client's."""
    base = metadata if isinstance(metadata, dict) else {}
    theirs = base.get("colab_guard") if isinstance(base.get("colab_guard"), dict) else {}
    mine = {k: v for k, v in theirs.items() if k in CLIENT_KEYS}
    mine["consent"] = {"rules": list(held.rules), "cell_hash": held.cell_hash}
    return {**base, "colab_guard": mine}


@dataclass
class Prompted:
    """A warn request let through to the kernel, whose guard asks in the output."""

    user: str
    kernel_id: str
    cell_hash: str
    findings: list[Any]
    path: str | None
    input_id: str | None = None  # the guard's input_request, once seen
    answer: str | None = None  # what the client answered it
    settled: str | None = None  # "consent" | "declined", once recorded
    started: float = field(default_factory=time.monotonic)


class PromptWatch:
    """The kernel's text prompt, followed on one websocket connection: the strike of a
    warn cell counts when the user's answer is "run", or, with no prompt (stdin not
    allowed), when the kernel ran the cell (its execute_reply is not the guard's
    ProhibitedCodeError)."""

    def __init__(self) -> None:
        self.by_request: dict[str, Prompted] = {}
        self.by_input: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.by_request)

    def add(self, msg_id: str, prompted: Prompted) -> None:
        self.by_request[msg_id] = prompted

    def outgoing(self, msg_type: str, parent_id: str, msg_id: str, content: dict[str, Any]):
        """A kernel message to the client. Returns (prompted, outcome) to record, or None.
        Outcomes: "consent" (it runs or ran), "declined"."""
        prompted = self.by_request.get(parent_id)
        if prompted is None:
            return None
        if msg_type == "input_request" and prompted.input_id is None:
            if content.get("prompt") == PROMPT:
                prompted.input_id = msg_id
                self.by_input[msg_id] = parent_id
            return None
        if msg_type != "execute_reply":
            return None
        del self.by_request[parent_id]
        if prompted.input_id:
            self.by_input.pop(prompted.input_id, None)
        stopped = content.get("status") == "error" and content.get("ename") == ENAME
        if stopped:
            return None if prompted.settled else (prompted, "declined")
        if prompted.settled == "consent":
            return None
        return prompted, "consent"  # it ran (after "cancel" only with a tampered guard)

    def input_reply(self, parent_id: str, value: Any) -> tuple[Prompted, str] | None:
        """The client's answer to the guard's prompt (passed on to the kernel as is)."""
        request_id = self.by_input.pop(parent_id, None)
        prompted = self.by_request.get(request_id or "")
        if prompted is None or prompted.settled:
            return None
        prompted.answer = str(value)
        run = str(value).strip().lower() in RUN_ANSWERS
        prompted.settled = "consent" if run else "declined"
        return prompted, prompted.settled

    def closed(self) -> list[tuple[Prompted, str]]:
        """The connection closed: an unanswered prompt ran nothing; a request that never
        prompted may run (stdin not allowed): counted."""
        out = []
        for prompted in self.by_request.values():
            if prompted.settled:
                continue
            out.append((prompted, "declined" if prompted.input_id else "consent"))
        self.by_request.clear()
        self.by_input.clear()
        return out
