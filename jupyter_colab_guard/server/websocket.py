"""The authoritative check: every execute_request on the kernel websocket.

A refused request never reaches the kernel. The frontend gets, with the request as
parent: status busy, the warning (display_data), an error, the execute_reply and status
idle, so it never waits forever. Both the JSON protocol (text or binary frames) and the
``v1.kernel.websocket.jupyter.org`` protocol are handled.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
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

from ..kernel.config import render_message
from . import policymark, render
from .frames import FrameError, FrameLimits, check_frame
from .service import Decision, GuardService
from .standing import UNKNOWN

V1 = "v1.kernel.websocket.jupyter.org"
SETTINGS_KEY = "colab_guard"
# the same ename as the kernel guard's refusals (kernel/errors.py)
ENAME = "ProhibitedCodeError"


# debugger commands that evaluate code in the kernel, and the argument holding it
DEBUG_EVALUATING = {
    "evaluate": ("expression",),
    "setExpression": ("expression", "value"),
    "setVariable": ("value",),
}


# breakpoint fields the debugger evaluates as code when the breakpoint is hit
BREAKPOINT_CODE = ("condition", "hitCondition", "logMessage")


def debug_texts(command: str, args: dict[str, Any]) -> list[str]:
    """Code a debug request makes the kernel evaluate: expressions and values, and the
    conditions and log messages of breakpoints (``{expr}`` in a log message runs too)."""
    texts = [args[k] for k in DEBUG_EVALUATING.get(command, ()) if isinstance(args.get(k), str)]
    if command in ("setBreakpoints", "setFunctionBreakpoints", "setExceptionBreakpoints"):
        points = args.get("breakpoints") or args.get("filterOptions") or []
        for point in points if isinstance(points, list) else []:
            if isinstance(point, dict):
                texts += [point[k] for k in BREAKPOINT_CODE if isinstance(point.get(k), str)]
    return texts


@dataclass
class Incoming:
    raw: Any
    channel: str
    header: dict[str, Any]
    content: dict[str, Any]
    received: float = field(default_factory=time.monotonic)


def _client_time(header: dict[str, Any]) -> float | None:
    """The header's date (client clock) in seconds, if it has a usable one."""
    value = header.get("date")
    try:
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str) and value:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        pass
    return None


def needs_check(msg_type: str | None) -> bool:
    return msg_type in ("execute_request", "debug_request")


class GuardConnectionMixin:
    """Mixed into the server's kernel websocket connection class.

    Every message is parsed. Messages that can run code (``execute_request`` and
    ``debug_request``, on ANY channel: ipykernel 7 also serves shell requests sent on
    control) are checked in the guard's thread pool, so a slow check never stalls the
    server; while a check runs, later messages of this connection wait in a queue so
    that their order is kept.
    """

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
                guard = self.guard
                info = guard.kernel(self.kernel_id) if guard else None  # type: ignore[attr-defined]
                if info is not None and self._guard_path:
                    info.path = self._guard_path
        except Exception:
            self._guard_path = None
        guard = self.guard
        if guard is not None:  # the watcher's notices about this kernel come here
            guard.notices.add(self.kernel_id, self, asyncio.get_running_loop())  # type: ignore[attr-defined]
        return await super().connect()  # type: ignore[misc]

    def disconnect(self) -> None:
        guard = self.guard
        if guard is not None:
            guard.notices.discard(self.kernel_id, self)  # type: ignore[attr-defined]
        return super().disconnect()  # type: ignore[misc,no-any-return]

    def guard_notice(self, reason: str, findings: list[dict[str, Any]], detail: str) -> None:
        """The standard warning, unasked, in the output of the cell running now (the last
        execute_request let through) or with no parent when none is."""
        guard = self.guard
        if guard is None:
            return
        view = {
            "message": render_message(guard.message, guard.service_name),
            "service": guard.service_name,
            "reason": reason,
            "findings": findings,
            "status": guard.safe_status(guard.resolve_user(self.websocket_handler.current_user))  # type: ignore[attr-defined]
            or UNKNOWN,
            "faq_url": guard.faq_url,
            "appeal_url": guard.appeal_url,
            "show_evidence": guard.show_evidence,
        }
        html, text = render.refusal(view)
        parent = self.__dict__.get("_guard_running") or {}
        self._send(
            "iopub",
            "display_data",
            parent,
            {
                "data": {"text/html": html, "text/plain": f"{text}\n{detail}"},
                "metadata": {
                    "colab_guard": {
                        "reason": reason,
                        "detail": detail,
                        "dialog": render.dialog_fields({**view, "detail": detail}),
                    }
                },
                "transient": {},
            },
        )

    def _parse(self, ws_msg: Any) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
        """(channel, header, content) of an incoming frame, whose layout and sizes are
        checked first: jupyter_server's deserializers trust the declared offsets."""
        guard = self.guard
        assert guard is not None
        limits = FrameLimits.for_cells(guard.max_cell_size, guard.settings.max_frame_buffers)
        check_frame(ws_msg, self.subprotocol == V1, limits)  # type: ignore[attr-defined]
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

    # -- the queue -------------------------------------------------------------------

    def _guard_state(self) -> tuple[collections.deque[Incoming], list[Any]]:
        st = self.__dict__.get("_guard_q")
        if st is None:
            st = self.__dict__["_guard_q"] = (collections.deque(), [None])
        return st  # type: ignore[no-any-return]

    def handle_incoming_message(self, incoming_msg: Any) -> None:
        guard = self.guard
        if guard is None:
            return super().handle_incoming_message(incoming_msg)  # type: ignore[misc]
        channels = getattr(self, "channels", None)  # gateway connections have none
        if channels is not None and not channels:  # closed: the base class drops it
            return super().handle_incoming_message(incoming_msg)  # type: ignore[misc]
        try:
            channel, header, content = self._parse(incoming_msg)
        except FrameError as e:
            self.log.warning("colab-guard: websocket frame dropped unparsed: %s", e)  # type: ignore[attr-defined]
            return None
        except Exception:
            self.log.warning("colab-guard: unparsable websocket frame dropped")  # type: ignore[attr-defined]
            return None
        if not isinstance(header, dict) or not isinstance(content, dict):
            self.log.warning("colab-guard: malformed websocket message dropped")  # type: ignore[attr-defined]
            return None
        queue, task = self._guard_state()
        item = Incoming(incoming_msg, channel or "shell", header, content)
        if not queue and task[0] is None and not needs_check(header.get("msg_type")):
            return super().handle_incoming_message(incoming_msg)  # type: ignore[misc]
        queue.append(item)
        if task[0] is None:
            task[0] = asyncio.ensure_future(self._guard_drain())
        return None

    async def _guard_drain(self) -> None:
        queue, task = self._guard_state()
        try:
            while queue:
                item = queue.popleft()
                try:
                    await self._guard_process(item)
                except Exception:  # never forward a message whose check broke
                    self.log.exception("colab-guard: message dropped")  # type: ignore[attr-defined]
        finally:
            task[0] = None

    def _forward(self, item: Incoming) -> None:
        super().handle_incoming_message(item.raw)  # type: ignore[misc]

    async def _guard_process(self, item: Incoming) -> None:
        guard = self.guard
        assert guard is not None
        msg_type = item.header.get("msg_type")
        if msg_type == "execute_request":
            await self._check_execute(guard, item)
        elif msg_type == "debug_request":
            await self._check_debug(guard, item)
        else:
            self._forward(item)

    async def _check_execute(self, guard: GuardService, item: Incoming) -> None:
        content = item.content
        if self._sent_before_refusal_seen(item):
            # sent before the frontend could see the refusal of an earlier request with
            # stop_on_error: aborted, as the kernel aborts its queue after an error
            self._abort(item.header)
            return
        self.__dict__.pop("_guard_refused", None)
        code = content.get("code") if isinstance(content.get("code"), str) else ""
        ue = content.get("user_expressions") or {}
        exprs = [v for v in ue.values() if isinstance(v, str)] if isinstance(ue, dict) else []
        decision = await guard.decide(
            user_obj=self.websocket_handler.current_user,  # type: ignore[attr-defined]
            kernel_id=self.kernel_id,  # type: ignore[attr-defined]
            code=code or "",
            expressions=exprs,
            path=self._guard_path,
        )
        if not decision.refuse:
            self.__dict__["_guard_running"] = item.header  # the cell a notice belongs to
            self._forward(self._policy_marked(guard, item))
            return
        self._refuse(item.header, decision)
        if content.get("stop_on_error", True) and not content.get("silent", False):
            # (client date of the request, our receive time, our reply time)
            self.__dict__["_guard_refused"] = (
                _client_time(item.header),
                item.received,
                time.monotonic(),
            )

    def _policy_marked(self, guard: GuardService, item: Incoming) -> Incoming:
        """The request marked with the policy version in force (policymark.py): the
        kernel guard puts that version in force before it checks the cell."""
        v1 = self.subprotocol == V1  # type: ignore[attr-defined]
        raw = policymark.mark(item.raw, v1, self.session, guard.policy_mark())  # type: ignore[attr-defined]
        return dataclasses.replace(item, raw=raw)

    def _sent_before_refusal_seen(self, item: Incoming) -> bool:
        """Whether an execute_request was sent before the frontend could have seen the
        reply to the last refused one: it reached us before that reply was written, or
        its client-side date is less than our check time after the refused one's (both
        dates from the client's clock, so no clock offset is involved)."""
        refused = self.__dict__.get("_guard_refused")
        if refused is None:
            return False
        d1, received, replied = refused
        if item.received <= replied:
            return True
        d2 = _client_time(item.header)
        return d1 is not None and d2 is not None and d2 - d1 <= replied - received

    async def _check_debug(self, guard: GuardService, item: Incoming) -> None:
        """Debugger requests that evaluate code bypass IPython's transformers: their
        code is checked like a cell (a failed check follows fail_mode)."""
        content = item.content
        command = content.get("command")
        args = content.get("arguments") if isinstance(content.get("arguments"), dict) else {}
        texts = debug_texts(str(command), args)
        if not texts:
            self._forward(item)
            return
        decision = await guard.decide(
            user_obj=self.websocket_handler.current_user,  # type: ignore[attr-defined]
            kernel_id=self.kernel_id,  # type: ignore[attr-defined]
            code="",
            expressions=texts,
            path=self._guard_path,
        )
        if not decision.refuse:
            self._forward(item)
            return
        self._send(
            item.channel,
            "debug_reply",
            item.header,
            {
                "type": "response",
                "request_seq": content.get("seq"),
                "success": False,
                "command": command,
                "message": "Refused by the acceptable-use policy",
            },
        )

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

    def _abort(self, parent: dict[str, Any]) -> None:
        self._send("iopub", "status", parent, {"execution_state": "busy"})
        self._send("shell", "execute_reply", parent, {"status": "aborted", "execution_count": None})
        self._send("iopub", "status", parent, {"execution_state": "idle"})

    def _refuse(self, parent: dict[str, Any], d: Decision) -> None:
        guard = self.guard
        assert guard is not None
        view = {
            "message": render_message(guard.message, guard.service_name),
            "service": guard.service_name,
            "reason": d.reason,
            "findings": [f.to_dict() for f in d.findings if f.action in ("block", "warn")],
            "status": d.status,
            "faq_url": guard.faq_url,
            "appeal_url": guard.appeal_url,
            "show_evidence": guard.show_evidence,
        }
        html, text = render.refusal(view)
        ename = ENAME
        evalue = {
            "block": "Execution refused: the code matches a prohibited action.",
            "restricted": render.level_sentence(d.status, guard.service_name),
            "suspended": render.level_sentence(d.status, guard.service_name),
            "too_large": f"Execution refused: the cell is larger than {guard.max_cell_size} "
            "characters, the most the acceptable-use check accepts.",
            "unguarded": "Execution refused: this kernel's acceptable-use guard is not active.",
            "timeout": "Execution refused: the cell is too large or too complex for the "
            "acceptable-use check to finish in time. Split it into smaller cells.",
        }.get(d.reason, "Execution refused: the acceptable-use check is unavailable.")
        self._send("iopub", "status", parent, {"execution_state": "busy"})
        self._send(
            "iopub",
            "display_data",
            parent,
            {
                "data": {"text/html": html, "text/plain": text},
                "metadata": {
                    "colab_guard": {
                        "reason": d.reason,
                        "level": d.status.level,
                        "dialog": render.dialog_fields(view),
                    }
                },
                "transient": {},
            },
        )
        self._send(
            "iopub",
            "error",
            parent,
            {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]},
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
