"""Pages and REST API under ``{base_url}colab-guard/``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web

from . import events as E
from . import render
from .service import GuardService, ReportRejected

USER_RESOURCE = "colab_guard"
ADMIN_RESOURCE = "colab_guard_admin"
MAX_APPEAL = 5000
APPEALS_PER_HOUR = 5
USER_HIDDEN = ("evidence", "cell_text")  # hidden from users unless show_evidence


def event_json(row: dict[str, Any], show_evidence: bool = True) -> dict[str, Any]:
    out = dict(row)
    if not show_evidence:
        for key in USER_HIDDEN:
            out.pop(key, None)
    out["time"] = datetime.fromtimestamp(row["ts"], UTC).isoformat() if row.get("ts") else None
    return out


class GuardMixin(ExtensionHandlerMixin):
    @property
    def guard(self) -> GuardService:
        return self.settings["colab_guard"]  # type: ignore[attr-defined]

    @property
    def guard_user(self) -> str:
        return self.guard.resolve_user(self.current_user)  # type: ignore[attr-defined]

    def status_json(self, user: str) -> dict[str, Any]:
        st = self.guard.status(user)
        return {
            "user": user,
            "strikes": st.strikes,
            "level": st.level,
            "until": st.until,
            "next_level": st.next_level,
            "strikes_to_next": st.strikes_to_next,
        }


class FaqHandler(GuardMixin, JupyterHandler):
    auth_resource = USER_RESOURCE

    @web.authenticated
    @authorized
    def get(self) -> None:
        policy = self.guard.policy
        by_cat: dict[str, list[Any]] = {}
        for rule in policy.rules if policy else []:
            by_cat.setdefault(rule.category, []).append(rule)
        self.finish(render.faq_page(policy, self.guard.service_name, by_cat))


class UserPageHandler(GuardMixin, JupyterHandler):
    auth_resource = USER_RESOURCE

    @web.authenticated
    @authorized
    def get(self) -> None:
        user = self.guard_user
        base = self.base_url
        self.finish(
            render.user_page(
                user,
                self.guard.status(user),
                self.guard.store.events(user),
                self.guard.service_name,
                self.guard.faq_url,
                url_path_join(base, "colab-guard/api/appeals"),
                self.xsrf_token.decode() if isinstance(self.xsrf_token, bytes) else self.xsrf_token,
                show_evidence=self.guard.show_evidence,
            )
        )


class MyStrikesHandler(GuardMixin, APIHandler):
    auth_resource = USER_RESOURCE

    @web.authenticated
    @authorized
    def get(self) -> None:
        user = self.guard_user
        out = self.status_json(user)
        show = self.guard.show_evidence
        out["events"] = [event_json(e, show) for e in self.guard.store.events(user)]
        self.finish(json.dumps(out))


class AppealHandler(GuardMixin, APIHandler):
    auth_resource = USER_RESOURCE

    @web.authenticated
    @authorized
    def post(self) -> None:
        body = self.get_json_body() or {}
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            raise web.HTTPError(400, "message is required")
        event_id = body.get("event_id")
        if event_id is not None:
            ev = self.guard.store.get_event(int(event_id)) if isinstance(event_id, int) else None
            if ev is None or ev["user"] != self.guard_user:  # only one's own events
                raise web.HTTPError(400, "unknown event_id")
        recent = [
            a for a in self.guard.store.appeals(self.guard_user) if a["ts"] > time.time() - 3600
        ]
        if len(recent) >= APPEALS_PER_HOUR:
            raise web.HTTPError(429, "too many appeals; try again later")
        aid = self.guard.store.add_appeal(self.guard_user, message[:MAX_APPEAL], event_id)
        self.set_status(201)
        self.finish(json.dumps({"id": aid, "status": "open"}))


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

    def emit(self, action: str, user: str | None, detail: Any = None) -> None:
        data = {"admin": self.admin, "action": action, "user": user}
        data["detail"] = json.dumps(detail) if detail is not None else None
        self.guard.events.emit(E.ADMIN, data)


class AdminUsersHandler(AdminHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        users = []
        for row in self.guard.store.users():
            users.append({**row, **self.status_json(row["user"])})
        self.finish(json.dumps({"users": users}))


class AdminUserEventsHandler(AdminHandler):
    @web.authenticated
    @authorized
    def get(self, user: str) -> None:
        out = self.status_json(user)
        out["events"] = [event_json(e) for e in self.guard.store.events(user, limit=1000)]
        out["exceptions"] = self.guard.store.exceptions(user=user)
        self.finish(json.dumps(out))


class AdminResetHandler(AdminHandler):
    @web.authenticated
    @authorized
    def post(self, user: str) -> None:
        self.guard.store.reset(user, by=self.admin)
        self.emit("reset", user)
        self.finish(json.dumps(self.status_json(user)))


class AdminExceptionsHandler(AdminHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        user = self.get_argument("user", None)
        self.finish(json.dumps({"exceptions": self.guard.store.exceptions(user=user)}))

    @web.authenticated
    @authorized
    def post(self) -> None:
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, "a JSON object is required")
        user, cat, rule = body.get("user"), body.get("category"), body.get("rule")
        if not isinstance(user, str) or not user.strip() or len(user) > 255:
            raise web.HTTPError(400, "user must be a non-empty string")
        if not (cat or rule):
            raise web.HTTPError(400, "one of category / rule is required")
        for name, value in (("category", cat), ("rule", rule)):
            if value is not None and (not isinstance(value, str) or len(value) > 128):
                raise web.HTTPError(400, f"{name} must be a string")
        policy = self.guard.policy
        if policy is not None:
            if cat and cat not in policy.categories:
                raise web.HTTPError(400, f"unknown category {cat!r}")
            if rule and rule not in {r.id for r in policy.rules}:
                raise web.HTTPError(400, f"unknown rule {rule!r}")
        reason = str(body.get("reason") or "")[:MAX_APPEAL]
        eid = self.guard.store.grant_exception(user, self.admin, cat or None, rule or None, reason)
        self.guard.refresh_kernel_identities(user)
        self.emit("grant_exception", user, {"id": eid, "category": cat, "rule": rule})
        self.set_status(201)
        self.finish(json.dumps({"id": eid}))


class AdminExceptionHandler(AdminHandler):
    @web.authenticated
    @authorized
    def delete(self, exception_id: str) -> None:
        rows = [x for x in self.guard.store.exceptions(active=True) if x["id"] == int(exception_id)]
        if not rows or not self.guard.store.revoke_exception(int(exception_id), self.admin):
            raise web.HTTPError(404, "no such active exception")
        self.guard.refresh_kernel_identities(rows[0]["user"])
        self.emit("revoke_exception", rows[0]["user"], {"id": int(exception_id)})
        self.set_status(204)
        self.finish()


class AdminAppealsHandler(AdminHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        rows = [event_json(a) for a in self.guard.store.appeals()]
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
    name = "[^/]+"
    return [
        (r"/colab-guard/?", UserPageHandler),
        (r"/colab-guard/faq", FaqHandler),
        (r"/colab-guard/api/strikes/me", MyStrikesHandler),
        (r"/colab-guard/api/appeals", AppealHandler),
        (r"/colab-guard/api/kernel/reports", KernelReportHandler),
        (r"/colab-guard/api/admin/users", AdminUsersHandler),
        (rf"/colab-guard/api/admin/users/({name})/events", AdminUserEventsHandler),
        (rf"/colab-guard/api/admin/users/({name})/reset", AdminResetHandler),
        (r"/colab-guard/api/admin/exceptions", AdminExceptionsHandler),
        (r"/colab-guard/api/admin/exceptions/(\d+)", AdminExceptionHandler),
        (r"/colab-guard/api/admin/appeals", AdminAppealsHandler),
    ]
