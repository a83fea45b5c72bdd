"""Websocket frames are bounded before any parsing: the layout checks of frames.py, and
hostile frames through a real server (dropped; the server and the websocket still answer)."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from typing import Any

import pytest
from guard_helpers import V1, auth_header
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from jupyter_colab_guard.server.frames import (
    FrameError,
    FrameLimits,
    check_binary,
    check_frame,
    check_v1,
)

LIMITS = FrameLimits.for_cells(max_cell_size=1000, max_buffers=4)
# 24 bytes declaring 2**62 offsets: jupyter_server's v1 deserializer loops over them all
HOSTILE_V1 = (2**62).to_bytes(8, "little") + bytes(16)
# 8 bytes declaring 2**31 - 1 parts: the legacy deserializer builds a 2 GB struct format
HOSTILE_BINARY = struct.pack("!iI", 2**31 - 1, 8)


def message(code: str = "print(1)") -> dict[str, Any]:
    return Session().msg("execute_request", content={"code": code, "silent": False})


def v1_frame(msg: dict[str, Any] | None = None, buffers: list[bytes] | None = None) -> bytes:
    msg = msg or message()
    pack = Session().pack
    parts = [pack(msg[k]) for k in ("header", "parent_header", "metadata", "content")]
    return serialize_msg_to_ws_v1([*parts, *(buffers or [])], "shell")


def v1_raw(offsets: list[int], body: bytes = b"") -> bytes:
    head = len(offsets).to_bytes(8, "little")
    return head + b"".join(o.to_bytes(8, "little") for o in offsets) + body


def refused(check: Any, frame: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        check(frame, LIMITS)


# -- the validator ------------------------------------------------------------------------


def test_valid_v1_frame_passes_and_deserializes() -> None:
    frame = v1_frame(message("x = 1"), [b"buf0", b"buf1"])
    check_v1(frame, LIMITS)
    check_frame(frame, True, LIMITS)
    channel, parts = deserialize_msg_from_ws_v1(frame)
    assert channel == "shell" and len(parts) == 6
    assert json.loads(parts[3])["code"] == "x = 1" and parts[4:] == [b"buf0", b"buf1"]


def test_hostile_offset_count_refused_at_once() -> None:
    assert len(HOSTILE_V1) == 24
    start = time.monotonic()
    refused(check_v1, HOSTILE_V1, "more than 4 buffers")
    # within the buffer limit but not fitting in the frame
    refused(check_v1, (9).to_bytes(8, "little") + bytes(16), "do not fit")
    assert time.monotonic() - start < 0.1


def test_short_frames_and_missing_parts_refused() -> None:
    refused(check_v1, b"", "no offset count")
    refused(check_v1, b"\x01\x00", "no offset count")
    refused(check_v1, (0).to_bytes(8, "little"), "0 offsets")
    # channel and header only: no parent_header, metadata, content
    refused(check_v1, v1_raw([32, 37, 39], b"shell{}"), "a message needs 6")


def test_offsets_past_the_end_refused() -> None:
    frame = v1_frame()
    n = int.from_bytes(frame[:8], "little")
    last = 8 * n
    bad = frame[:last] + (len(frame) + 1).to_bytes(8, "little") + frame[last + 8 :]
    refused(check_v1, bad, "past the end")


def test_decreasing_offsets_refused() -> None:
    table = 8 * 7
    refused(
        check_v1,
        v1_raw([table, table + 5, table + 2, table + 9, table + 9, table + 9]),
        "decreasing",
    )
    refused(check_v1, v1_raw([8, 8, 8, 8, 8, 8], bytes(8)), "inside the offset table")


def test_too_many_buffers_refused() -> None:
    check_v1(v1_frame(buffers=[b"b"] * 4), LIMITS)
    refused(check_v1, v1_frame(buffers=[b"b"] * 5), "more than 4 buffers")


def test_part_sizes_bounded() -> None:
    big_header = message()
    big_header["header"]["pad"] = "h" * LIMITS.max_part_bytes
    refused(check_v1, v1_frame(big_header), "header of")
    # content: six bytes per character of max_cell_size plus headroom (a cell somewhat
    # over max_cell_size still reaches the server's "too large" refusal)
    check_v1(v1_frame(message("c" * 5000)), LIMITS)
    refused(check_v1, v1_frame(message("c" * LIMITS.max_content_bytes)), "content of")


def test_legacy_binary_frames() -> None:
    msg = {**message("y = 2"), "channel": "shell", "buffers": [b"abc"]}
    frame = serialize_binary_message(msg)
    check_binary(frame, LIMITS)
    check_frame(frame, False, LIMITS)
    assert deserialize_binary_message(frame)["content"]["code"] == "y = 2"

    refused(check_binary, HOSTILE_BINARY, "more than 4 buffers")
    refused(check_binary, struct.pack("!iI", -5, 8), "-5 parts")
    refused(check_binary, b"\x00\x00", "no part count")
    refused(check_binary, struct.pack("!iII", 3, 16, 20), "do not fit")
    refused(check_binary, struct.pack("!iII", 2, 12, 99) + b"x" * 8, "past the end")
    refused(check_binary, struct.pack("!iII", 2, 16, 12) + b"x" * 8, "decreasing")
    refused(check_binary, struct.pack("!iII", 2, 4, 12) + b"x" * 8, "inside the offset table")
    huge = {**message("z" * LIMITS.max_message_bytes), "channel": "shell", "buffers": []}
    refused(check_binary, serialize_binary_message(huge), "message of")


def test_text_frames_bounded() -> None:
    check_frame(json.dumps({**message(), "channel": "shell"}, default=str), False, LIMITS)
    with pytest.raises(FrameError, match="text frame of"):
        check_frame(" " * (LIMITS.max_message_bytes + 1), False, LIMITS)
    with pytest.raises(FrameError, match="text frame on the v1 protocol"):
        check_frame("{}", True, LIMITS)


# -- through a real server ------------------------------------------------------------------


# without the checks the server loops and allocates until the timeout: keep it short
@pytest.mark.timeout(30)
@pytest.mark.parametrize(("protocol", "frame"), [(V1, HOSTILE_V1), ("json", HOSTILE_BINARY)])
async def test_hostile_frame_dropped_and_server_answers(
    kernel_client: Any, jp_fetch: Any, protocol: str, frame: bytes, caplog: Any
) -> None:
    kc = await kernel_client("alice", protocol)
    ok = await kc.execute("print('before')")
    assert ok["reply"]["status"] == "ok"

    # the server shares this process's event loop: a server stuck in the deserializer
    # shows as this whole block taking long (or never ending)
    start = time.monotonic()
    await kc.ws.write_message(frame, binary=True)
    await asyncio.sleep(0.05)  # let the server read the frame
    r = await asyncio.wait_for(jp_fetch("api", "status", headers=auth_header("alice")), 1)
    assert r.code == 200
    assert time.monotonic() - start < 1
    assert "websocket frame dropped unparsed" in caplog.text

    # the same websocket still serves requests, and the bad frame reached no kernel
    res = await kc.execute("print('after')", timeout=30)
    assert res["reply"]["status"] == "ok" and "after" in res["text"]


async def test_oversized_cell_frame_dropped_connection_usable(
    kernel_client: Any, guard: Any, caplog: Any
) -> None:
    guard.max_cell_size = 100
    kc = await kernel_client("bob", "json")
    limits = FrameLimits.for_cells(100, guard.settings.max_frame_buffers)
    await kc.ws.write_message(json.dumps(kc.execute_msg("#" * limits.max_message_bytes)))
    # larger than max_cell_size but within the frame bound: the server's refusal
    res = await kc.execute("#" * 200)
    assert res["reply"]["status"] == "error" and "larger than 100" in res["reply"]["evalue"]
    assert "text frame of" in caplog.text
    res = await kc.execute("print('fine')")
    assert res["reply"]["status"] == "ok" and "fine" in res["text"]
