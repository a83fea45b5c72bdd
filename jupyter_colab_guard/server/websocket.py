"""The authoritative check: every execute_request on the kernel websocket.

A refused request never reaches the kernel. The frontend gets, with the request as
parent: status busy, the warning (display_data), an error, the execute_reply and status
idle, so it never waits forever. Both the JSON protocol (text or binary frames) and the
``v1.kernel.websocket.jupyter.org`` protocol are handled.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

try:
    from jupyter_client.jsonutil import json_default
except ImportError:  # pragma: no cover
    from jupyter_client.jsonutil import date_default as json_default

from . import render
from .service import UNKNOWN, Decision, GuardService

V1 = "v1.kernel.websocket.jupyter.org"
SETTINGS_KEY = "colab_guard"


class GuardConnectionMixin:
    """Mixed into the server's kernel websocket connection class."""

    _guard_path: str | None = None

    @property
    def guard(self) -> GuardService | None:
        return self.websocket_handler.settings.get(SETTINGS_KEY)  # type: ignore[attr-defined]

    async def connect(self) -> Any:  # remember the notebook path for the events
        try:
            sm = self.websocket_handler.settings.get("session_manager")  # type: ignore[attr-defined]
            if sm is not None:
                sess = await sm.get_session(kernel_id=self.kernel_id)  # type: ignore[attr-defined]
                self._guard_path = sess.get("path")
        except Exception:
            self._guard_path = None
        return await super().connect()  # type: ignore[misc]

    def _parse(self, ws_msg: Any) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
        """(channel, header, content) of an incoming frame."""
        if self.subprotocol == V1:  # type: ignore[attr-defined]
            channel, parts = deserialize_msg_from_ws_v1(ws_msg)
            header = self.session.unpack(parts[0])  # type: ignore[attr-defined]
            content = self.session.unpack(parts[3]) if len(parts) > 3 else {}  # type: ignore[attr-defined]
            return channel, header, content
        if isinstance(ws_msg, bytes):
            msg = deserialize_binary_message(ws_msg)
        else:
            msg = json.loads(ws_msg)
        return msg.get("channel"), msg.get("header") or {}, msg.get("content") or {}

    def handle_incoming_message(self, incoming_msg: Any) -> None:
        guard = self.guard
        if guard is None or not self.channels:  # type: ignore[attr-defined]
            return super().handle_incoming_message(incoming_msg)  # type: ignore[misc]
        try:
            channel, header, content = self._parse(incoming_msg)
        except Exception:
            self.log.warning("colab-guard: unparsable websocket frame dropped")  # type: ignore[attr-defined]
            return None
        if (channel or "shell") == "shell" and header.get("msg_type") == "execute_request":
            code = content.get("code") if isinstance(content.get("code"), str) else ""
            ue = content.get("user_expressions") or {}
            exprs = [v for v in ue.values() if isinstance(v, str)] if isinstance(ue, dict) else []
            try:
                decision = guard.check_execute(
                    user_obj=self.websocket_handler.current_user,  # type: ignore[attr-defined]
                    kernel_id=self.kernel_id,  # type: ignore[attr-defined]
                    code=code,
                    expressions=exprs,
                    path=self._guard_path,
                )
            except Exception:
                self.log.exception("colab-guard: check failed")  # type: ignore[attr-defined]
                if guard.fail_mode == "closed":
                    user = guard.resolve_user(self.websocket_handler.current_user)  # type: ignore[attr-defined]
                    status = guard.safe_status(user) or UNKNOWN
                    decision = Decision(True, "unavailable", "", [], status)
                else:
                    return super().handle_incoming_message(incoming_msg)  # type: ignore[misc]
            if decision.refuse:
                self._refuse(header, decision)
                return None
        elif channel == "control" and header.get("msg_type") == "debug_request":
            # debugger evaluations bypass IPython's transformers: check them too
            args = content.get("arguments") or {}
            if content.get("command") == "evaluate" and isinstance(args.get("expression"), str):
                decision = guard.check_execute(
                    user_obj=self.websocket_handler.current_user,  # type: ignore[attr-defined]
                    kernel_id=self.kernel_id,  # type: ignore[attr-defined]
                    code=args["expression"],
                    path=self._guard_path,
                )
                if decision.refuse:
                    self._send(
                        "control",
                        "debug_reply",
                        header,
                        {
                            "type": "response",
                            "request_seq": content.get("seq"),
                            "success": False,
                            "command": "evaluate",
                            "message": "Refused by the acceptable-use policy",
                        },
                    )
                    return None
        return super().handle_incoming_message(incoming_msg)  # type: ignore[misc]

    # -- replies ------------------------------------------------------------------------

    def _send(
        self, channel: str, msg_type: str, parent: dict[str, Any], content: dict[str, Any]
    ) -> None:
        msg = self.session.msg(msg_type, content=content, parent=parent)  # type: ignore[attr-defined]
        if self.subprotocol == V1:  # type: ignore[attr-defined]
            data = serialize_msg_to_ws_v1(msg, channel, self.session.pack)  # type: ignore[attr-defined]
            self.websocket_handler.write_message(data, binary=True)  # type: ignore[attr-defined]
        else:
            msg["channel"] = channel
            self.websocket_handler.write_message(json.dumps(msg, default=json_default))  # type: ignore[attr-defined]

    def _refuse(self, parent: dict[str, Any], d: Decision) -> None:
        guard = self.guard
        assert guard is not None
        view = {
            "service": guard.service_name,
            "reason": d.reason,
            "findings": [f.to_dict() for f in d.findings if f.action in ("block", "warn")],
            "status": d.status,
            "faq_url": guard.faq_url,
            "appeal_url": guard.appeal_url,
            "show_evidence": guard.show_evidence,
        }
        text = render.warning_text(view)
        ename = "PolicyViolation"
        evalue = {
            "block": "Execution refused: the code matches a prohibited action.",
            "restricted": render.level_sentence(d.status, guard.service_name),
            "suspended": render.level_sentence(d.status, guard.service_name),
        }.get(d.reason, "Execution refused: the acceptable-use check is unavailable.")
        self._send("iopub", "status", parent, {"execution_state": "busy"})
        self._send(
            "iopub",
            "display_data",
            parent,
            {
                "data": {"text/html": render.warning_html(view), "text/plain": text},
                "metadata": {"colab_guard": {"reason": d.reason, "level": d.status.level}},
                "transient": {},
            },
        )
        self._send(
            "iopub",
            "error",
            parent,
            {
                "ename": ename,
                "evalue": evalue,
                "traceback": [f"{ename}: {evalue}"],
            },
        )
        self._send(
            "shell",
            "execute_reply",
            parent,
            {
                "status": "error",
                "execution_count": None,
                "ename": ename,
                "evalue": evalue,
                "traceback": [f"{ename}: {evalue}"],
                "user_expressions": {},
                "payload": [],
            },
        )
        self._send("iopub", "status", parent, {"execution_state": "idle"})


class GuardedZMQChannelsWebsocketConnection(GuardConnectionMixin, ZMQChannelsWebsocketConnection):
    """The default guarded connection class."""


def guarded_connection_class(base: type) -> type:
    """The guarded version of the server's configured connection class."""
    if issubclass(base, GuardConnectionMixin):
        return base
    if base is ZMQChannelsWebsocketConnection:
        return GuardedZMQChannelsWebsocketConnection
    return type(f"Guarded{base.__name__}", (GuardConnectionMixin, base), {})
