"""Layout checks of kernel websocket frames, done before any parsing.

jupyter_server's deserializers trust a frame's declared layout: a 24-byte v1 frame that
declares 2**62 offsets makes ``deserialize_msg_from_ws_v1`` loop (and allocate) 2**62
times, and a legacy binary frame declaring 2**31 parts makes ``deserialize_binary_message``
build a 2 GB struct format. These checks cost O(declared parts) only after that count is
known to fit in the frame and to be within the configured maximum.

v1 (``v1.kernel.websocket.jupyter.org``) layout: uint64 LE ``offset_number``, then that
many uint64 LE offsets, then the parts (channel, header, parent_header, metadata, content,
buffers...): part i is ``frame[offsets[i]:offsets[i + 1]]``, the last offset ends the last
part. Legacy binary JSON layout: int32 BE count, then that many uint32 BE offsets: part 0
(the JSON message) and the buffers; the last part runs to the end of the frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import pairwise

MAX_PART_BYTES = 64 * 1024  # channel, header, parent_header, metadata
# a character of code takes at most 6 bytes of JSON ("\u0001"); the frame bound stays
# above max_cell_size so that large cells still get the server's "too large" refusal
BYTES_PER_CHAR = 6
HEADROOM = 64 * 1024
# v1: channel, header, parent_header, metadata, content need 6 offsets
V1_MESSAGE_OFFSETS = 6
V1_PARTS = ("channel", "header", "parent_header", "metadata")


class FrameError(ValueError):
    """A frame whose layout is refused (the reason is safe to log)."""


@dataclass(frozen=True)
class FrameLimits:
    max_content_bytes: int
    max_buffers: int
    max_part_bytes: int = MAX_PART_BYTES

    @classmethod
    def for_cells(cls, max_cell_size: int, max_buffers: int) -> FrameLimits:
        return cls(BYTES_PER_CHAR * max_cell_size + HEADROOM, max_buffers)

    @property
    def max_message_bytes(self) -> int:
        """A whole JSON message: header, parent_header, metadata and content."""
        return self.max_content_bytes + 3 * self.max_part_bytes


def _check_offsets(offsets: list[int], table_end: int, size: int) -> None:
    if offsets[0] < table_end:
        raise FrameError(f"first offset {offsets[0]} inside the offset table")
    if any(b < a for a, b in pairwise(offsets)):
        raise FrameError("decreasing offsets")
    if offsets[-1] > size:
        raise FrameError(f"offset {offsets[-1]} past the end of a {size}-byte frame")


def check_v1(frame: bytes, limits: FrameLimits) -> None:
    """Raise FrameError unless ``frame`` is a well-formed v1 frame within ``limits``."""
    size = len(frame)
    if size < 8:
        raise FrameError(f"{size}-byte frame has no offset count")
    n = int.from_bytes(frame[:8], "little")
    if n < V1_MESSAGE_OFFSETS:
        raise FrameError(f"{n} offsets, a message needs {V1_MESSAGE_OFFSETS}")
    if n - V1_MESSAGE_OFFSETS > limits.max_buffers:
        raise FrameError(f"{n} offsets: more than {limits.max_buffers} buffers")
    if 8 * (n + 1) > size:
        raise FrameError(f"{n} offsets do not fit in a {size}-byte frame")
    offsets = list(struct.unpack_from(f"<{n}Q", frame, 8))
    _check_offsets(offsets, 8 * (n + 1), size)
    sizes = [b - a for a, b in pairwise(offsets)]
    for name, part in zip(V1_PARTS, sizes, strict=False):
        if part > limits.max_part_bytes:
            raise FrameError(f"{name} of {part} bytes")
    if sizes[4] > limits.max_content_bytes:
        raise FrameError(f"content of {sizes[4]} bytes")


def check_binary(frame: bytes, limits: FrameLimits) -> None:
    """Raise FrameError unless ``frame`` is a well-formed legacy binary JSON frame."""
    size = len(frame)
    if size < 4:
        raise FrameError(f"{size}-byte frame has no part count")
    (n,) = struct.unpack_from("!i", frame)  # signed, as jupyter_server reads it
    if n < 1:
        raise FrameError(f"{n} parts")
    if n - 1 > limits.max_buffers:
        raise FrameError(f"{n} parts: more than {limits.max_buffers} buffers")
    if 4 * (n + 1) > size:
        raise FrameError(f"{n} offsets do not fit in a {size}-byte frame")
    offsets = list(struct.unpack_from(f"!{n}I", frame, 4))
    _check_offsets(offsets, 4 * (n + 1), size)
    end = offsets[1] if n > 1 else size
    if end - offsets[0] > limits.max_message_bytes:
        raise FrameError(f"message of {end - offsets[0]} bytes")


def check_frame(frame: bytes | str, v1: bool, limits: FrameLimits) -> None:
    """Raise FrameError unless ``frame`` may be given to jupyter_server's deserializers
    (``v1``: the connection uses the v1 protocol)."""
    if isinstance(frame, str):
        if v1:
            raise FrameError("text frame on the v1 protocol")
        if len(frame) > limits.max_message_bytes:
            raise FrameError(f"text frame of {len(frame)} characters")
    elif v1:
        check_v1(frame, limits)
    else:
        check_binary(frame, limits)
