"""Exec events of the whole machine from the Linux process connector (cn_proc).

The watcher's fast path: the kernel multicasts one netlink datagram per exec, so a
process is seen as soon as it execs instead of at the next /proc poll.
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import struct
import sys
import time

NETLINK_CONNECTOR = 11
CN_IDX_PROC = CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE = 1, 2
PROC_EVENT_NONE, PROC_EVENT_FORK, PROC_EVENT_EXEC = 0x0, 0x1, 0x2  # NONE: the control ack
SO_RCVBUFFORCE = 33  # not exported by the socket module
RCVBUF = 4 << 20
ACK_COOKIE = 0x6A6367  # our cn_msg.ack; the kernel's ack carries ACK_COOKIE + 1
ACK_TIMEOUT = 0.5

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (linux/netlink.h), 16 bytes
CN_MSG = struct.Struct("=IIIIHH")  # id.idx, id.val, seq, ack, len, flags (linux/connector.h), 20
EVENT = struct.Struct("=IIQII")  # what, cpu, timestamp_ns; exec: pid, tgid; ack: err (cn_proc.h)


def control(*words: int) -> bytes:
    """A netlink datagram carrying a cn_proc control message (op, or op + event filter)."""
    data = struct.pack(f"={len(words)}I", *words)
    cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, ACK_COOKIE, len(data), 0) + data
    return NLMSGHDR.pack(NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


def parse(datagram: bytes) -> list[tuple[int, int, int]]:
    """(what, cn_msg.ack, value) of each proc_event in a datagram; value is the tgid of
    an exec, the error of a control ack, 0 otherwise. Malformed tails are dropped."""
    out: list[tuple[int, int, int]] = []
    off = 0
    while off + NLMSGHDR.size + CN_MSG.size + EVENT.size <= len(datagram):
        length = NLMSGHDR.unpack_from(datagram, off)[0]
        if length < NLMSGHDR.size or off + length > len(datagram):
            break
        cn = off + NLMSGHDR.size
        idx, val, _, ack, size, _ = CN_MSG.unpack_from(datagram, cn)
        whole = length >= NLMSGHDR.size + CN_MSG.size + EVENT.size and size >= EVENT.size
        if whole and idx == CN_IDX_PROC and val == CN_VAL_PROC:
            what, _, _, first, tgid = EVENT.unpack_from(datagram, cn + CN_MSG.size)
            value = tgid if what == PROC_EVENT_EXEC else first if what == PROC_EVENT_NONE else 0
            out.append((what, ack, value))
        off += (length + 3) & ~3  # NLMSG_ALIGN
    return out


class ExecEvents:
    """Exec events of the whole machine from the process connector (root only)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._pending: list[int] = []
        self._lost = False
        self._ack: int | None = None
        self.overflowed = False  # events were lost before the last read(): poll /proc in full

    @classmethod
    def open(cls) -> ExecEvents | None:
        """Listen, or None when unavailable: not Linux, not root, no CONFIG_PROC_EVENTS,
        or not in the initial user and pid namespaces (the kernel then never answers).
        Kernels >= 6.6 let any user listen; this stays root-only on purpose."""
        if not sys.platform.startswith("linux") or os.geteuid() != 0:
            return None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError:
            return None
        self = cls(sock)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((0, CN_IDX_PROC))  # port id 0: the kernel picks a unique one
            sock.send(control(PROC_CN_MCAST_LISTEN))
            deadline = time.monotonic() + ACK_TIMEOUT
            while True:
                self._drain(self._pending)
                if self._ack is not None or time.monotonic() >= deadline:
                    break
                self._wait(deadline)
            if self._ack != 0:  # no answer, or EPERM from kernels < 6.6 without CAP_NET_ADMIN
                raise OSError(self._ack or errno.ETIMEDOUT, "process connector refused")
            # Exec events only (kernels >= 6.6; older ones ignore a request of this size).
            sock.send(control(PROC_CN_MCAST_LISTEN, PROC_EVENT_EXEC))
        except OSError:
            self.close()
            return None
        return self

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, timeout: float | None) -> list[int]:
        """Tgids that exec'd since the last read, in order, without repeats; [] when
        ``timeout`` passes first. Sets ``overflowed`` when the socket dropped events."""
        tgids, self._pending = self._pending, []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._drain(tgids)
            if tgids or self._lost or (deadline is not None and time.monotonic() >= deadline):
                break
            self._wait(deadline)
        self.overflowed, self._lost = self._lost, False
        return list(dict.fromkeys(tgids))

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        try:  # else the kernel keeps counting a listener and building events for nobody
            self._sock.send(control(PROC_CN_MCAST_IGNORE))
        except OSError:
            pass
        self._sock.close()

    def _wait(self, deadline: float | None) -> None:
        left = None if deadline is None else max(0, math.ceil((deadline - time.monotonic()) * 1e3))
        self._poll.poll(left)

    def _drain(self, tgids: list[int]) -> None:
        """Read every queued datagram without blocking."""
        while True:
            try:
                data, (port, _) = self._sock.recvfrom(8192, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self._lost = True  # reported once; the queue stays readable
                continue
            if port != 0:  # not from the kernel: any local user can unicast to our port
                continue
            for what, ack, value in parse(data):
                if what == PROC_EVENT_EXEC:
                    tgids.append(value)
                elif what == PROC_EVENT_NONE and ack == ACK_COOKIE + 1:
                    self._ack = value
