"""Admin API of the published policies: ``{base_url}colab-guard/api/admin/policy``.

- ``GET .../policy``: the policy in force on this server (source, name, version, store
  version) and the versions in the shared store, newest first (no documents).
- ``GET .../policy/versions/N``: one version with its document.
- ``POST .../policy`` ``{"document": "<YAML or JSON text>", "comment": "..."}``: validated
  first (400 with every problem otherwise), then stored as the next version; in store
  mode this server puts it in force at once, the others at their next poll.

Admins only (AdminHandler), XSRF as every jupyter_server API (token or ``X-XSRFToken``).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from sqlalchemy.exc import SQLAlchemyError
from tornado import web

from ..policy import PolicyError
from ..policy.document import parse_document
from ..store.policies import MAX_DOCUMENT, PolicyVersion, PolicyVersions
from . import admin_actions as A
from .handlers import AdminHandler

MAX_COMMENT = 2000


def _store_error(err: Exception) -> web.HTTPError:
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
    return web.HTTPError(503, f"colab-guard: the policy store could not be used: {first}")


class PolicyAdminBase(AdminHandler):
    def _versions(self) -> PolicyVersions:
        return self.guard.policy_versions or PolicyVersions(self.guard.store.engine)

    def in_force(self) -> dict[str, Any]:
        guard = self.guard
        policy = guard.policy
        return {
            "source": "store" if guard.policy_versions is not None else "file",
            "name": policy.name if policy else None,
            "version": policy.version if policy else None,
            "store_version": guard.store_version,
            "path": guard.policy_path if guard.store_version is None else None,
        }


class AdminPolicyHandler(PolicyAdminBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        versions = self._versions()
        try:
            rows = await self.in_pool(lambda: versions.history(100))
        except SQLAlchemyError as err:
            raise _store_error(err) from err
        out = {"in_force": self.in_force(), "versions": [r.summary() for r in rows]}
        self.finish(json.dumps(out))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_object()
        document, comment = body.get("document"), body.get("comment")
        if not isinstance(document, str) or not document.strip():
            raise web.HTTPError(400, "document (the policy as YAML or JSON text) is required")
        if len(document) > MAX_DOCUMENT:
            raise web.HTTPError(400, f"document larger than {MAX_DOCUMENT} characters")
        if comment is not None and not isinstance(comment, str):
            raise web.HTTPError(400, "comment must be a string")
        try:  # validated before anything is stored
            parse_document(document, "document")
        except PolicyError as err:
            self.set_status(400)
            problems = [str(p) for p in err.problems]
            message = "the policy is not valid: " + "; ".join(problems)
            self.finish(json.dumps({"message": message, "problems": problems}))
            return
        guard, admin, versions = self.guard, self.admin, self._versions()

        def publish() -> PolicyVersion:
            row = versions.publish(document, by=admin, comment=(comment or "")[:MAX_COMMENT])
            if guard.policy_versions is not None:
                guard.poll_policy()  # in force here at once
            return row

        try:
            row = await self.in_pool(publish)
        except SQLAlchemyError as err:
            raise _store_error(err) from err
        detail = {"version": row.version, "sha256": row.sha256}
        A.emit(guard, admin, "publish_policy", None, detail)
        self.set_status(201)
        self.finish(json.dumps({**row.summary(), "in_force": self.in_force()}))


class AdminPolicyVersionHandler(PolicyAdminBase):
    @web.authenticated
    @authorized
    async def get(self, version: str) -> None:
        versions = self._versions()
        try:
            row = await self.in_pool(lambda: versions.get(int(version)))
        except SQLAlchemyError as err:
            raise _store_error(err) from err
        if row is None:
            raise web.HTTPError(404, "no such policy version")
        self.finish(json.dumps({**row.summary(), "document": row.document}))


def policy_handlers() -> list[tuple[str, type]]:
    return [
        (r"/colab-guard/api/admin/policy", AdminPolicyHandler),
        (r"/colab-guard/api/admin/policy/versions/(\d+)", AdminPolicyVersionHandler),
    ]
