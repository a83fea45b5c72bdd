"""Handlers of the admin console (HTML under ``/colab-guard/admin``), of the user's page
and the FAQ, and the appeal answers of the JSON admin API.

Console pages: jupyter_server's authorizer on ``colab_guard_admin`` AND a guard admin,
else a 403 page. Forms are POSTs checked by jupyter_server's XSRF check (``_xsrf``) and
answered with a redirect to a page (POST-redirect-GET).
"""

from __future__ import annotations

import json
import math
from http.client import responses
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from . import admin_actions as A
from . import console as C
from .handlers import ADMIN_RESOURCE, USER_RESOURCE, AdminHandler, GuardMixin, event_json

PAGE_SIZE = 50  # users per console page
MAX_SEARCH = 255
STATUSES = ("open", "accepted", "rejected", "all")


class HtmlMixin(GuardMixin):
    """Pages: error pages in the guard's own layout, the XSRF token as text."""

    @property
    def urls(self) -> C.Urls:
        return C.Urls(url_path_join(self.base_url, "colab-guard/"))  # type: ignore[attr-defined]

    @property
    def xsrf(self) -> str:
        token = self.xsrf_token  # type: ignore[attr-defined]
        return token.decode() if isinstance(token, bytes) else str(token)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = ""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message and status_code < 500:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        if status_code == 403 and not message:
            message = "You are not allowed to see this page."
        self.set_header("Content-Type", "text/html; charset=utf-8")
        reason = responses.get(status_code, "Error")
        self.finish(C.error_page(self.guard.service_name, status_code, reason, message))


class ConsoleHandler(HtmlMixin, JupyterHandler):
    auth_resource = ADMIN_RESOURCE

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        # no user: @web.authenticated sends GETs to the login page, refuses POSTs
        if self.current_user is not None and not self.guard.is_admin(
            self.guard_user, self.current_user
        ):
            who = self.guard.service_name
            raise web.HTTPError(403, f"Only {who} administrators may use this page.")

    @property
    def admin(self) -> str:
        return self.guard_user

    @property
    def done(self) -> str | None:
        return self.get_argument("done", None)

    def open_appeals(self) -> int:
        return len(self.guard.store.appeals(status="open"))

    def back(self, url: str, done: str) -> None:
        """POST-redirect-GET to a console page, with a fixed notice."""
        self.redirect(f"{url}?done={done}", status=303)

    def form(self, name: str, limit: int = A.MAX_TEXT) -> str:
        return self.get_body_argument(name, "")[:limit]

    async def act(self, fn: Any) -> Any:
        """Run an admin action in the pool; its ValueError is a 400 page."""
        try:
            return await self.in_pool(fn)
        except ValueError as err:
            raise web.HTTPError(400, str(err)) from err


class UsersPage(ConsoleHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        search = self.get_argument("q", "").strip()[:MAX_SEARCH]
        try:
            page_no = max(1, int(self.get_argument("page", "1")))
        except ValueError as err:
            raise web.HTTPError(400, "page must be a number") from err
        guard = self.guard

        def load() -> tuple[list[dict[str, Any]], int, int]:
            total = guard.store.count_users(search or None)
            start = (page_no - 1) * PAGE_SIZE
            rows = guard.store.users(search or None, limit=PAGE_SIZE, offset=start)
            for row in rows:
                st = guard.status(row["user"])
                row.update(strikes=st.strikes, level=st.level)
            return rows, total, self.open_appeals()

        rows, total, n_open = await self.in_pool(load)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        self.finish(
            C.users_page(
                guard.service_name,
                self.urls,
                rows,
                total=total,
                page_no=min(page_no, pages),
                pages=pages,
                search=search,
                open_appeals=n_open,
            )
        )


class UserPage(ConsoleHandler):
    @web.authenticated
    @authorized
    async def get(self, user: str) -> None:
        guard = self.guard

        def load() -> dict[str, Any]:
            return {
                "status": guard.status(user),
                "events": guard.store.events(user, limit=1000),
                "excs": guard.store.exceptions(user=user),
                "appeals": with_events(guard, guard.store.appeals(user)),
                "open_appeals": self.open_appeals(),
            }

        data = await self.in_pool(load)
        self.finish(
            C.user_page_admin(
                guard.service_name,
                self.urls,
                self.xsrf,
                user,
                policy=guard.policy,
                done=self.done,
                **data,
            )
        )


class ResetAction(ConsoleHandler):
    @web.authenticated
    @authorized
    async def post(self, user: str) -> None:
        guard, admin = self.guard, self.admin
        await self.act(lambda: A.reset(guard, admin, user))
        self.back(self.urls.user(user), "reset")


class ExceptionsPage(ConsoleHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        guard = self.guard
        excs, n_open = await self.in_pool(lambda: (guard.store.exceptions(), self.open_appeals()))
        self.finish(
            C.exceptions_page(
                guard.service_name, self.urls, self.xsrf, excs, guard.policy, self.done, n_open
            )
        )

    @web.authenticated
    @authorized
    async def post(self) -> None:
        guard, admin = self.guard, self.admin
        user = self.form("user", 255)
        cat, rule, reason = self.form("category", 128), self.form("rule", 128), self.form("reason")
        expires = self.form("expires", 64)
        await self.act(lambda: A.grant(guard, admin, user, cat, rule, reason, expires))
        self.back(self.urls.user(user), "granted")


class RevokeAction(ConsoleHandler):
    @web.authenticated
    @authorized
    async def post(self, exception_id: str) -> None:
        guard, admin = self.guard, self.admin
        user = await self.act(lambda: A.revoke(guard, admin, int(exception_id)))
        if user is None:
            raise web.HTTPError(404, "No such active exception.")
        self.back(self.urls.user(user), "revoked")


class AppealsPage(ConsoleHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        status = self.get_argument("status", "open")
        if status not in STATUSES:
            raise web.HTTPError(400, "unknown status")
        guard = self.guard

        def load() -> tuple[list[dict[str, Any]], int]:
            rows = guard.store.appeals(status=None if status == "all" else status)
            return with_events(guard, rows), self.open_appeals()

        rows, n_open = await self.in_pool(load)
        self.finish(
            C.appeals_page(
                guard.service_name, self.urls, self.xsrf, rows, status, self.done, n_open
            )
        )


class AnswerAction(ConsoleHandler):
    @web.authenticated
    @authorized
    async def post(self, appeal_id: str, verdict: str) -> None:
        guard, admin, note = self.guard, self.admin, self.form("note")
        accept = verdict == "accept"
        row = await self.act(lambda: A.answer(guard, admin, int(appeal_id), accept, note))
        if row is None:
            raise web.HTTPError(404, "No such open appeal (it may have been answered already).")
        self.back(self.urls.appeals, "accepted" if accept else "rejected")


def with_events(guard: Any, appeals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Appeals with the event each names (``event``: None when none)."""
    out = []
    for a in appeals:
        ev = guard.store.get_event(a["event_id"]) if a.get("event_id") is not None else None
        out.append({**a, "event": ev if ev and ev["user"] == a["user"] else None})
    return out


# -- the user's page and the FAQ (any logged-in user) --------------------------------------


class MyPage(HtmlMixin, JupyterHandler):
    auth_resource = USER_RESOURCE

    @web.authenticated
    @authorized
    async def get(self) -> None:
        user, guard = self.guard_user, self.guard

        def load() -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
            return guard.status(user), guard.store.events(user), guard.store.appeals(user)

        status, events, appeals = await self.in_pool(load)
        admin = guard.is_admin(user, self.current_user)
        self.finish(
            C.user_page(
                user=user,
                status=status,
                events=events,
                appeals=appeals,
                service=guard.service_name,
                faq_url=guard.faq_url,
                appeals_api=url_path_join(self.base_url, "colab-guard/api/appeals"),
                xsrf=self.xsrf,
                show_evidence=guard.show_evidence,
                console_url=self.urls.console if admin else None,
            )
        )


class FaqPage(HtmlMixin, JupyterHandler):
    auth_resource = USER_RESOURCE

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.finish(C.faq_page(self.guard.policy, self.guard.service_name))


# -- JSON admin API: answer an appeal -----------------------------------------------------


class AdminAnswerHandler(AdminHandler):
    """POST /colab-guard/api/admin/appeals/{id}/(accept|reject), body {"note"?}."""

    @web.authenticated
    @authorized
    async def post(self, appeal_id: str, verdict: str) -> None:
        body = self.json_object()
        guard, admin, note = self.guard, self.admin, body.get("note") or ""
        accept = verdict == "accept"
        try:
            row = await self.in_pool(lambda: A.answer(guard, admin, int(appeal_id), accept, note))
        except ValueError as err:
            raise web.HTTPError(400, str(err)) from err
        if row is None:
            raise web.HTTPError(404, "no such open appeal")
        self.finish(json.dumps(event_json(row)))


def console_handlers() -> list[tuple[str, type]]:
    name = "[^/]+"
    return [
        (r"/colab-guard/?", MyPage),
        (r"/colab-guard/faq", FaqPage),
        (r"/colab-guard/admin/?", UsersPage),
        (rf"/colab-guard/admin/users/({name})", UserPage),
        (rf"/colab-guard/admin/users/({name})/reset", ResetAction),
        (r"/colab-guard/admin/exceptions", ExceptionsPage),
        (r"/colab-guard/admin/exceptions/(\d+)/revoke", RevokeAction),
        (r"/colab-guard/admin/appeals", AppealsPage),
        (r"/colab-guard/admin/appeals/(\d+)/(accept|reject)", AnswerAction),
        (r"/colab-guard/api/admin/appeals/(\d+)/(accept|reject)", AdminAnswerHandler),
    ]
