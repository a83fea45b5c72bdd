"""Pages and REST API under ``{base_url}colab-guard/``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from . import admin_actions as A
from .consent import ConsentError
from .service import GuardService, ReportRejected

USER_RESOURCE = "colab_guard"
ADMIN_RESOURCE = "colab_guard_admin"
MAX_APPEAL = 5000
APPEALS_PER_HOUR = 5
USER_HIDDEN = ("evidence", "cell_text")  # hidden from users unless show_evidence
STORE_TIMEOUT = 30.0  # seconds a page's store work may take (503 past it)

T = TypeVar("T")


def event_json(row: dict[str, Any], show_evidence: bool = True) -> dict[str, Any]:
    out = dict(row)
    if not show_evidence:
        for key in USER_HIDDEN:
            out.pop(key, None)
    out["time"] = datetime.fromtimestamp(row["ts"], UTC).isoformat() if row.get("ts") else None
    return out


def status_json(guard: GuardService, user: str) -> dict[str, Any]:
    """Where ``user`` stands (reads the store: call it in the pool)."""
    st = guard.status(user)
    return {
        "user": user,
        "strikes": st.strikes,
        "level": st.level,
        "until": st.until,
        "next_level": st.next_level,
        "strikes_to_next": st.strikes_to_next,
    }


class GuardMixin(ExtensionHandlerMixin):
    @property
    def guard(self) -> GuardService:
        return self.settings["colab_guard"]  # type: ignore[attr-defined]

    @property
    def guard_user(self) -> str:
        return self.guard.resolve_user(self.current_user)  # type: ignore[attr-defined]

    def json_object(self) -> dict[str, Any]:
        """The request's JSON body, which must be an object (else 400)."""
        body = self.get_json_body() or {}  # type: ignore[attr-defined]
        if not isinstance(body, dict):
            raise web.HTTPError(400, "a JSON object is required")
        return body

    async def in_pool(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (store reads and writes) in the guard's pool: the store (SQLAlchemy,
        fsync, a database lock) never holds up the event loop. One call at a time per
        user; a store that does not answer within ``STORE_TIMEOUT`` seconds gives 503."""
        try:
            return await self.guard.run_in_pool(  # type: ignore[no-any-return]
                fn, timeout=STORE_TIMEOUT, user=self.guard_user, lane="store"
            )
        except TimeoutError as err:
            raise web.HTTPError(
                503, "colab-guard: the strike store did not answer in time"
            ) from err


class MyStrikesHandler(GuardMixin, APIHandler):
    auth_resource = USER_RESOURCE

    @web.authenticated
    @authorized
    async def get(self) -> None:
        user, guard = self.guard_user, self.guard
        out, events, appeals = await self.in_pool(
            lambda: (status_json(guard, user), guard.store.events(user), guard.store.appeals(user))
        )
        out["events"] = [event_json(e, guard.show_evidence) for e in events]
        out["appeals"] = [event_json(a) for a in appeals]  # with the admins' answers
        self.finish(json.dumps(out))


class AppealHandler(GuardMixin, APIHandler):
    auth_resource = USER_RESOURCE

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.get_json_body() or {}
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            raise web.HTTPError(400, "message is required")
        event_id = body.get("event_id")
        user, store = self.guard_user, self.guard.store

        def appeal() -> int:
            if event_id is not None:
                ev = store.get_event(event_id) if isinstance(event_id, int) else None
                if ev is None or ev["user"] != user:  # only one's own events
                    raise web.HTTPError(400, "unknown event_id")
            recent = [a for a in store.appeals(user) if a["ts"] > time.time() - 3600]
            if len(recent) >= APPEALS_PER_HOUR:
                raise web.HTTPError(429, "too many appeals; try again later")
            return store.add_appeal(user, message[:MAX_APPEAL], event_id)

        aid = await self.in_pool(appeal)  # one at a time per user: the limit holds
        if self.guard.webhook is not None:
            self.guard.webhook.send(
                "appeal.new",
                user,
                appeal={"id": aid, "event_id": event_id, "message": message[:MAX_APPEAL]},
            )
        self.set_status(201)
        self.finish(json.dumps({"id": aid, "status": "open"}))


class ConsentHandler(GuardMixin, APIHandler):
    """The answer to a consent dialog: ``{"token": ..., "choice": "run" | "cancel"}``.
    Authenticated, XSRF-checked (APIHandler); the token answers only the request the
    server holds for it, and only for the user it was issued to. What it leads to
    (``consent`` or ``declined``) is recorded where the request is held (websocket.py)."""

    auth_resource = USER_RESOURCE

    @web.authenticated
    @authorized
    def post(self) -> None:
        body = self.json_object()
        try:
            held = self.guard.consents.answer(
                body.get("token"), self.guard_user, body.get("choice")
            )
        except ConsentError as err:
            if err.status == 403:
                self.log.warning(
                    "colab-guard: %s answered a consent dialog of another user", self.guard_user
                )
            raise web.HTTPError(err.status, str(err)) from err
        self.finish(json.dumps({"choice": body["choice"], "kernel_id": held.kernel_id}))


class AdminHandler(GuardMixin, APIHandler):
    """jupyter_server's authorizer (resource colab_guard_admin) AND admin_users."""

    auth_resource = ADMIN_RESOURCE

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.current_user is None:
            raise web.HTTPError(403)
        if not self.guard.is_admin(self.guard_user, self.current_user):
            raise web.HTTPError(403, "colab-guard admin only")

    @property
    def admin(self) -> str:
        return self.guard_user


class AdminUsersHandler(AdminHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        guard = self.guard

        def users() -> list[dict[str, Any]]:
            return [{**row, **status_json(guard, row["user"])} for row in guard.store.users()]

        self.finish(json.dumps({"users": await self.in_pool(users)}))


class AdminUserEventsHandler(AdminHandler):
    @web.authenticated
    @authorized
    async def get(self, user: str) -> None:
        guard = self.guard

        def events() -> dict[str, Any]:
            out = status_json(guard, user)
            out["events"] = [event_json(e) for e in guard.store.events(user, limit=1000)]
            out["exceptions"] = guard.store.exceptions(user=user)
            return out

        self.finish(json.dumps(await self.in_pool(events)))


class AdminResetHandler(AdminHandler):
    @web.authenticated
    @authorized
    async def post(self, user: str) -> None:
        guard, admin = self.guard, self.admin

        def reset() -> dict[str, Any]:
            A.reset(guard, admin, user)
            return status_json(guard, user)

        self.finish(json.dumps(await self.in_pool(reset)))


class AdminExceptionsHandler(AdminHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        user, store = self.get_argument("user", None), self.guard.store
        rows = await self.in_pool(lambda: store.exceptions(user=user))
        self.finish(json.dumps({"exceptions": rows}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_object()
        guard, admin = self.guard, self.admin
        args = [body.get(k) for k in ("user", "category", "rule", "reason", "expires_at")]
        try:
            eid = await self.in_pool(lambda: A.grant(guard, admin, *args))
        except ValueError as err:
            raise web.HTTPError(400, str(err)) from err
        self.set_status(201)
        self.finish(json.dumps({"id": eid}))


class AdminExceptionHandler(AdminHandler):
    @web.authenticated
    @authorized
    async def delete(self, exception_id: str) -> None:
        guard, admin, xid = self.guard, self.admin, int(exception_id)
        if await self.in_pool(lambda: A.revoke(guard, admin, xid)) is None:
            raise web.HTTPError(404, "no such active exception")
        self.set_status(204)
        self.finish()


class AdminAppealsHandler(AdminHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        store = self.guard.store
        rows = await self.in_pool(lambda: [event_json(a) for a in store.appeals()])
        self.finish(json.dumps({"appeals": rows}))


class KernelReportHandler(GuardMixin, APIHandler):
    """Reports from kernels: Bearer token issued for one kernel id (not the server's
    auth); the user is the one who started that kernel, never a claim in the body."""

    def check_xsrf_cookie(self) -> None:  # bearer-token auth, no cookies involved
        return None

    @allow_unauthenticated
    async def post(self) -> None:
        auth = self.request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        info = self.guard.kernel_for_token(token.strip()) if scheme.lower() == "bearer" else None
        if info is None:
            raise web.HTTPError(403, "unknown kernel report token")
        raw = self.request.body or b"{}"
        guard = self.guard
        if len(raw) > guard.max_report_bytes:
            raise web.HTTPError(413, f"report larger than {guard.max_report_bytes} bytes")
        try:
            body = json.loads(raw)
            # store writes (and their fsync) run off the event loop
            counts = await guard.run_in_pool(lambda: guard.kernel_report(info, body, len(raw)))
        except ReportRejected as err:
            raise web.HTTPError(err.status, str(err)) from err
        except ValueError as err:
            raise web.HTTPError(400, str(err)) from err
        self.finish(json.dumps({"kernel_id": info.kernel_id, **counts}))


def handlers() -> list[tuple[str, type]]:
    from .console_handlers import console_handlers  # it imports this module

    name = "[^/]+"
    return [
        *console_handlers(),  # the console, the user's page, the FAQ
        (r"/colab-guard/api/strikes/me", MyStrikesHandler),
        (r"/colab-guard/api/appeals", AppealHandler),
        (r"/colab-guard/api/consent", ConsentHandler),
        (r"/colab-guard/api/kernel/reports", KernelReportHandler),
        (r"/colab-guard/api/admin/users", AdminUsersHandler),
        (rf"/colab-guard/api/admin/users/({name})/events", AdminUserEventsHandler),
        (rf"/colab-guard/api/admin/users/({name})/reset", AdminResetHandler),
        (r"/colab-guard/api/admin/exceptions", AdminExceptionsHandler),
        (r"/colab-guard/api/admin/exceptions/(\d+)", AdminExceptionHandler),
        (r"/colab-guard/api/admin/appeals", AdminAppealsHandler),
    ]
