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
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

try:
    from jupyter_client.jsonutil import json_default
except ImportError:  # pragma: no cover
    from jupyter_client.jsonutil import date_default as json_default

from ..kernel.config import render_message
from . import policymark, render
from .consent import Held, Prompted, PromptWatch, client_metadata, granted_metadata
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
    metadata: dict[str, Any] = field(default_factory=dict)
    parent: dict[str, Any] = field(default_factory=dict)
    dialogs: bool = False  # the client declared it answers the consent dialog
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
            for held in list(self._guard_held()):  # its dialogs can no longer be answered
                guard.consents.release(held)
            for prompted, outcome in self._guard_prompts().closed():
                self._settle_soon(prompted, outcome, {"via": "prompt", "closed": True})
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

    def _parse(self, ws_msg: Any) -> tuple[str | None, list[Any]]:
        """(channel, [header, parent_header, metadata, content]) of an incoming frame,
        whose layout and sizes are checked first: jupyter_server's deserializers trust
        the declared offsets."""
        guard = self.guard
        assert guard is not None
        limits = FrameLimits.for_cells(guard.max_cell_size, guard.settings.max_frame_buffers)
        check_frame(ws_msg, self.subprotocol == V1, limits)  # type: ignore[attr-defined]
        if self.subprotocol == V1:  # type: ignore[attr-defined]
            channel, parts = deserialize_msg_from_ws_v1(ws_msg)
            unpack = self.session.unpack  # type: ignore[attr-defined]
            return channel, [
                unpack(parts[i]) if i < len(parts) and len(parts[i]) else {} for i in range(4)
            ]
        if isinstance(ws_msg, bytes):
            msg = deserialize_binary_message(ws_msg)
        else:
            msg = json.loads(ws_msg)
        keys = ("header", "parent_header", "metadata", "content")
        return msg.get("channel"), [msg.get(k) or {} for k in keys]

    def _with_metadata(self, ws_msg: Any, metadata: dict[str, Any]) -> Any:
        """The same frame with other metadata, in the client's protocol."""
        if self.subprotocol == V1:  # type: ignore[attr-defined]
            channel, parts = deserialize_msg_from_ws_v1(ws_msg)
            parts = list(parts)
            parts[2] = self.session.pack(metadata)  # type: ignore[attr-defined]
            return serialize_msg_to_ws_v1(parts, channel)
        if isinstance(ws_msg, bytes):
            msg = deserialize_binary_message(ws_msg)
            msg["metadata"] = metadata
            return serialize_binary_message(msg)
        msg = json.loads(ws_msg)
        msg["metadata"] = metadata
        return json.dumps(msg, default=json_default)

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
            channel, (header, parent, metadata, content) = self._parse(incoming_msg)
        except FrameError as e:
            self.log.warning("colab-guard: websocket frame dropped unparsed: %s", e)  # type: ignore[attr-defined]
            return None
        except Exception:
            self.log.warning("colab-guard: unparsable websocket frame dropped")  # type: ignore[attr-defined]
            return None
        if not all(isinstance(x, dict) for x in (header, parent, metadata, content)):
            self.log.warning("colab-guard: malformed websocket message dropped")  # type: ignore[attr-defined]
            return None
        # a consent field can only come from the server: any client's is dropped
        cleaned, dialogs = client_metadata(metadata)
        if cleaned is not None:
            incoming_msg, metadata = self._with_metadata(incoming_msg, cleaned), cleaned
        if header.get("msg_type") == "input_reply" and self._guard_prompts():
            answered = self._guard_prompts().input_reply(
                str(parent.get("msg_id") or ""), content.get("value")
            )
            if answered is not None:
                prompted, outcome = answered
                self._settle_soon(prompted, outcome, {"via": "prompt", "answer": prompted.answer})
        queue, task = self._guard_state()
        item = Incoming(
            incoming_msg, channel or "shell", header, content, metadata, parent, dialogs
        )
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
                    self._answer_dropped(item)
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
        if decision.refuse:
            self._refuse(item.header, decision)
            self._note_refusal(item)
            return
        if decision.warn and item.dialogs:
            await self._ask_in_dialog(guard, item, decision)
            return
        if decision.warn:  # the kernel's guard asks in the output: follow the answer
            self._guard_prompts().add(
                str(item.header.get("msg_id") or ""),
                Prompted(
                    decision.user,
                    self.kernel_id,  # type: ignore[attr-defined]
                    decision.cell_hash,
                    decision.findings,
                    self._guard_path,
                ),
            )
        self.__dict__["_guard_running"] = item.header  # the cell a notice belongs to
        self._forward(self._policy_marked(guard, item))

    def _note_refusal(self, item: Incoming) -> None:
        """With stop_on_error, what the frontend sent before it could see this refusal is
        aborted (see _sent_before_refusal_seen)."""
        content = item.content
        if content.get("stop_on_error", True) and not content.get("silent", False):
            # (client date of the request, our receive time, our reply time)
            self.__dict__["_guard_refused"] = (
                _client_time(item.header),
                item.received,
                time.monotonic(),
            )

    # -- consent to a warn cell (server/consent.py) -------------------------------------

    def _guard_held(self) -> set[Held]:
        return self.__dict__.setdefault("_guard_held_set", set())  # type: ignore[no-any-return]

    def _guard_prompts(self) -> PromptWatch:
        return self.__dict__.setdefault("_guard_prompt_watch", PromptWatch())  # type: ignore[no-any-return]

    async def _ask_in_dialog(self, guard: GuardService, item: Incoming, d: Decision) -> None:
        """Hold the request, send the dialog with a one-use token, and wait for the
        user's answer (POST colab-guard/api/consent) or the token's expiry. Later
        messages of this connection wait, as behind a running cell."""
        kernel_id = self.kernel_id  # type: ignore[attr-defined]
        token, held = guard.consents.hold(d.user, kernel_id, d.cell_hash, d.warn_rules)
        self._guard_held().add(held)
        try:
            self._send("iopub", "status", item.header, {"execution_state": "busy"})
            self._send_warning(item.header, d, "warn", token)
            wait = max(held.expires - time.time(), 0.0)
            try:
                choice = await asyncio.wait_for(asyncio.shield(held.answer), wait)
            except TimeoutError:
                choice = "expired"
        finally:
            guard.consents.release(held)
            self._guard_held().discard(held)
        prompted = Prompted(d.user, kernel_id, d.cell_hash, d.findings, self._guard_path)
        channels = getattr(self, "channels", None)
        if choice == "run" and channels is not None and not channels:
            choice = "closed"  # answered, but the connection is gone: nothing would run
        if choice == "run":
            await self._settle(prompted, "consent", {"via": "dialog", "choice": "run"})
            item.raw = self._with_metadata(item.raw, granted_metadata(item.metadata, held))
            self.__dict__["_guard_running"] = item.header
            self._forward(self._policy_marked(guard, item))
            return
        await self._settle(prompted, "declined", {"via": "dialog", "choice": choice})
        if choice == "closed":
            return
        evalue = "Cancelled: the cell was not run."
        if choice == "expired":
            evalue = "Cancelled: the question was not answered in time; the cell was not run."
        self._send_error(item.header, evalue)
        self._note_refusal(item)

    def _settle_soon(self, prompted: Prompted, outcome: str, detail: dict[str, Any]) -> None:
        """Record a consent outcome from a synchronous callback."""
        task = asyncio.ensure_future(self._settle(prompted, outcome, detail))
        self.__dict__.setdefault("_guard_tasks", set()).add(task)
        task.add_done_callback(self.__dict__["_guard_tasks"].discard)

    async def _settle(self, prompted: Prompted, outcome: str, detail: dict[str, Any]) -> None:
        """Record ``consent`` (the cell runs: a strike) or ``declined`` (no strike)."""
        guard = self.guard
        if guard is None:
            return
        warn = [f for f in prompted.findings if f.action == "warn"]
        top = warn[0] if warn else None
        detail = {**detail, "rules": sorted({f.rule for f in warn})}
        spec = {
            "kind": outcome,
            "source": "server",
            "kernel_id": prompted.kernel_id,
            "path": prompted.path,
            "finding": top,
            "cell_hash": prompted.cell_hash,
            "detail": json.dumps(detail),
            # analysis findings (a cell the check could not read) are never held against anyone
            "strike": outcome == "consent" and any(f.category != "analysis" for f in warn),
        }
        try:
            await guard.run_in_pool(
                lambda: guard.record(user=prompted.user, **spec),
                timeout=30.0,
                user=prompted.user,
                lane="store",
            )
        except Exception:
            self.log.exception("colab-guard: could not record a %s event", outcome)  # type: ignore[attr-defined]

    def handle_outgoing_message(self, stream: Any, outgoing_msg: list[Any]) -> None:
        """Kernel to client: while a warn cell is asked in the output, its prompt and
        its reply are followed (consent.PromptWatch)."""
        prompts = self.__dict__.get("_guard_prompt_watch")
        if prompts:
            try:
                self._watch_outgoing(prompts, outgoing_msg)
            except Exception:
                self.log.exception("colab-guard: could not read a kernel message")  # type: ignore[attr-defined]
        return super().handle_outgoing_message(stream, outgoing_msg)  # type: ignore[misc,no-any-return]

    def _watch_outgoing(self, prompts: PromptWatch, outgoing_msg: list[Any]) -> None:
        _, parts = self.session.feed_identities(outgoing_msg)  # type: ignore[attr-defined]
        unpack = self.session.unpack  # type: ignore[attr-defined]
        header = unpack(getattr(parts[1], "bytes", parts[1]))
        msg_type = header.get("msg_type")
        if msg_type not in ("input_request", "execute_reply"):
            return
        parent = unpack(getattr(parts[2], "bytes", parts[2]))
        content = unpack(getattr(parts[4], "bytes", parts[4]))
        found = prompts.outgoing(
            msg_type, str(parent.get("msg_id") or ""), str(header.get("msg_id") or ""), content
        )
        if found is not None:
            prompted, outcome = found
            how = "prompt" if prompted.input_id else "headless"
            detail: dict[str, Any] = {"via": how, "reply": content.get("status")}
            if prompted.answer is not None:
                detail["answer"] = prompted.answer
            self._settle_soon(prompted, outcome, detail)

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
        self._send_warning(parent, d, d.reason)
        self._send_error(parent, evalue)

    def _send_warning(
        self, parent: dict[str, Any], d: Decision, reason: str, token: str | None = None
    ) -> None:
        """The standard warning (display_data) with the dialog's fields; for a warn cell
        held for consent, the one-use token goes in ``transient`` (never saved in the
        notebook)."""
        guard = self.guard
        assert guard is not None
        view = {
            "message": render_message(guard.message, guard.service_name),
            "service": guard.service_name,
            "reason": reason,
            "findings": [f.to_dict() for f in d.findings if f.action in ("block", "warn")],
            "status": d.status,
            "faq_url": guard.faq_url,
            "appeal_url": guard.appeal_url,
            "show_evidence": guard.show_evidence,
        }
        html, text = render.refusal(view)
        transient: dict[str, Any] = {}
        if token is not None:
            transient["colab_guard_consent"] = {"token": token}
        self._send(
            "iopub",
            "display_data",
            parent,
            {
                "data": {"text/html": html, "text/plain": text},
                "metadata": {
                    "colab_guard": {
                        "reason": reason,
                        "level": d.status.level,
                        "dialog": render.dialog_fields(view),
                    }
                },
                "transient": transient,
            },
        )

    def _answer_dropped(self, item: Incoming) -> None:
        """A request whose check broke is refused with a reply, so the cell never waits."""
        if item.header.get("msg_type") != "execute_request":
            return
        try:
            self._send("iopub", "status", item.header, {"execution_state": "busy"})
        except Exception:  # the websocket closed meanwhile
            return
        self._send_error(
            item.header, "Execution refused: the acceptable-use check failed on this cell."
        )

    def _send_error(self, parent: dict[str, Any], evalue: str) -> None:
        """The error, the execute_reply and status idle of a request the kernel never saw."""
        ename = ENAME
        traceback = [f"{ename}: {evalue}"]
        try:
            self._send(
                "iopub", "error", parent, {"ename": ename, "evalue": evalue, "traceback": traceback}
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
                    "traceback": traceback,
                    "user_expressions": {},
                    "payload": [],
                },
            )
            self._send("iopub", "status", parent, {"execution_state": "idle"})
        except Exception as err:  # the websocket closed meanwhile
            self.log.info("colab-guard: reply not sent: %s", err)  # type: ignore[attr-defined]


class GuardedZMQChannelsWebsocketConnection(GuardConnectionMixin, ZMQChannelsWebsocketConnection):
    """The default guarded connection class."""


def guarded_connection_class(base: type) -> type:
    """The guarded version of the server's configured connection class."""
    if issubclass(base, GuardConnectionMixin):
        return base
    if base is ZMQChannelsWebsocketConnection:
        return GuardedZMQChannelsWebsocketConnection
    return type(f"Guarded{base.__name__}", (GuardConnectionMixin, base), {})
