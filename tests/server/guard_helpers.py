"""Helpers of the server extension tests (not fixtures): identity provider, kernel client."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

USERS = ("alice", "bob", "root", "bystander", *(f"hostile{i}" for i in range(4)))
TOKENS = {f"{name}-token": name for name in USERS}
V1 = "v1.kernel.websocket.jupyter.org"


class TokenUserProvider(IdentityProvider):
    """A provider with stable identities: ``Authorization: token alice-token`` is alice."""

    def get_user(self, handler: Any) -> User | None:
        scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        name = TOKENS.get(token.strip()) if scheme.lower() == "token" else None
        if name is not None:
            handler._token_authenticated = True  # no XSRF check, as jupyter_server does
            return User(username=name)
        # a browser-like login: a cookie, so forms need their XSRF token
        cookie = handler.get_cookie(LOGIN_COOKIE)
        name = TOKENS.get(cookie or "")
        return User(username=name) if name else None


LOGIN_COOKIE = "guard-test-login"


def cookie_header(user: str, xsrf: str | None = None) -> dict[str, str]:
    """Headers of a browser-like session of ``user`` (and its ``_xsrf`` cookie)."""
    cookies = f"{LOGIN_COOKIE}={user}-token"
    if xsrf:
        cookies += f"; _xsrf={xsrf}"
    return {"Cookie": cookies}


def auth_header(user: str) -> dict[str, str]:
    return {"Authorization": f"token {user}-token"}


async def post_report(jp_fetch: Any, authorization: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a kernel report with this Authorization header; the server's JSON answer."""
    r = await jp_fetch(
        "colab-guard",
        "api",
        "kernel",
        "reports",
        method="POST",
        body=json.dumps(body),
        headers={"Authorization": authorization},
    )
    return json.loads(r.body)  # type: ignore[no-any-return]


class KernelClient:
    """A minimal frontend: sends requests in either protocol, collects replies."""

    def __init__(self, ws: Any, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.session = uuid.uuid4().hex

    def _msg(self, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        header = {
            "msg_id": uuid.uuid4().hex,
            "username": "test",
            "session": self.session,
            "msg_type": msg_type,
            "version": "5.3",
            "date": datetime.now(UTC).isoformat(),
        }
        return {"header": header, "parent_header": {}, "metadata": {}, "content": content}

    async def send(self, channel: str, msg: dict[str, Any]) -> None:
        if self.protocol == V1:
            parts = [
                json.dumps(msg[k]).encode()
                for k in ("header", "parent_header", "metadata", "content")
            ]
            await self.ws.write_message(serialize_msg_to_ws_v1(parts, channel), binary=True)
        else:
            await self.ws.write_message(json.dumps({**msg, "channel": channel, "buffers": []}))

    async def recv(self) -> dict[str, Any]:
        raw = await self.ws.read_message()
        if raw is None:
            raise ConnectionError("websocket closed")
        if isinstance(raw, bytes) and self.protocol == V1:
            channel, parts = deserialize_msg_from_ws_v1(raw)
            keys = ("header", "parent_header", "metadata", "content")
            msg = {k: json.loads(p) for k, p in zip(keys, parts[:4], strict=False)}
            msg["channel"] = channel
            return msg
        return json.loads(raw)

    def execute_msg(
        self, code: str, user_expressions: dict[str, str] | None = None
    ) -> dict[str, Any]:
        return self._msg(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": user_expressions or {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )

    async def collect(self, mids: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
        """Replies and iopub messages of several requests sent at once, by msg_id."""
        out: dict[str, dict[str, Any]] = {
            mid: {"reply": None, "iopub": [], "idle": False} for mid in mids
        }

        async def loop() -> None:
            while not all(r["reply"] is not None and r["idle"] for r in out.values()):
                m = await self.recv()
                res = out.get(m.get("parent_header", {}).get("msg_id"))
                if res is None:
                    continue
                mt = m["header"]["msg_type"]
                if mt in ("execute_reply", "debug_reply"):
                    res["reply"] = m["content"]
                    if mt == "debug_reply":
                        res["idle"] = True
                elif m.get("channel") == "iopub":
                    res["iopub"].append(m)
                    if mt == "status" and m["content"]["execution_state"] == "idle":
                        res["idle"] = True

        await asyncio.wait_for(loop(), timeout)
        for res in out.values():
            res["text"] = "".join(
                m["content"].get("text", "")
                for m in res["iopub"]
                if m["header"]["msg_type"] == "stream"
            )
        return out

    async def execute(
        self,
        code: str,
        user_expressions: dict[str, str] | None = None,
        timeout: float = 60,
        channel: str = "shell",
    ) -> dict[str, Any]:
        """Run a cell; return {'reply': content, 'iopub': [msgs], 'text': stdout}."""
        msg = self.execute_msg(code, user_expressions)
        await self.send(channel, msg)
        mid = msg["header"]["msg_id"]
        res = (await self.collect([mid], timeout))[mid]
        return {"reply": res["reply"], "iopub": res["iopub"], "text": res["text"]}


def server_refusal(res: dict[str, Any]) -> str | None:
    """The server's reason when it refused (its display carries colab_guard metadata)."""
    if res["reply"].get("ename") != "ProhibitedCodeError":
        return None
    for m in res["iopub"]:
        meta = m["content"].get("metadata", {}).get("colab_guard")
        if meta:
            return str(meta["reason"])
    return None
