"""The policy version the server marks on every execute_request it lets through.

The kernel-side guard compares the mark with the version it enforces and, when they
differ, loads that version from the server's private snapshot folder before it checks
the cell (kernel/follow.py). Whatever a client put in the field is replaced (or
removed when the server has no policy), so only the server names the version.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

try:
    from jupyter_client.jsonutil import json_default
except ImportError:  # pragma: no cover
    from jupyter_client.jsonutil import date_default as json_default

FIELD = "colab_guard_policy"  # in the request's metadata


def _marked_meta(meta: Any, version: str | None) -> dict[str, Any]:
    out = dict(meta) if isinstance(meta, dict) else {}
    out.pop(FIELD, None)
    if version:
        out[FIELD] = version
    return out


def mark(raw: Any, v1: bool, session: Any, version: str | None) -> Any:
    """The websocket frame ``raw`` (an execute_request, already checked) with its
    metadata's ``FIELD`` set to ``version`` (None: the field removed)."""
    if v1:
        channel, parts = deserialize_msg_from_ws_v1(raw)
        parts = list(parts)
        while len(parts) < 4:  # a frame without metadata or content parts
            parts.append(session.pack({}))
        try:
            meta = session.unpack(parts[2])
        except Exception:  # unreadable metadata: replaced by the mark alone
            meta = {}
        parts[2] = session.pack(_marked_meta(meta, version))
        return serialize_msg_to_ws_v1(parts, channel)
    if isinstance(raw, bytes):
        msg = deserialize_binary_message(raw)
        msg["metadata"] = _marked_meta(msg.get("metadata"), version)
        return serialize_binary_message(msg)
    msg = json.loads(raw)
    msg["metadata"] = _marked_meta(msg.get("metadata"), version)
    return json.dumps(msg, default=json_default)
