"""Listening sockets of the machine and the processes that hold them (Linux /proc)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct

LISTEN = "0A"  # TCP state in /proc/net/tcp{,6}
TABLES = (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6))


def listening() -> dict[int, tuple[str, int]]:
    """Socket inode -> (local address, port) of every listening TCP socket."""
    out: dict[int, tuple[str, int]] = {}
    for path, family in TABLES:
        try:
            with open(path, encoding="ascii") as f:
                next(f, None)  # the header
                for line in f:
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != LISTEN:
                        continue
                    host, _, port = fields[1].partition(":")
                    out[int(fields[9])] = (_address(host, family), int(port, 16))
        except OSError:
            continue
    return out


def _address(hexed: str, family: int) -> str:
    raw = bytes.fromhex(hexed)
    # the kernel prints each 32-bit word in host order
    words = struct.unpack(f"<{len(raw) // 4}I", raw)
    packed = struct.pack(f">{len(words)}I", *words)
    text = socket.inet_ntop(family, packed)
    mapped = ipaddress.ip_address(text)
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
        return str(mapped.ipv4_mapped)
    return text


def holders(inodes: set[int], pids: list[int]) -> dict[int, list[int]]:
    """pid -> the socket inodes among ``inodes`` that it has open (its fds read once)."""
    out: dict[int, list[int]] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(fd.path)
                    if link.startswith("socket:["):
                        inode = int(link[8:-1])
                        if inode in inodes:
                            out.setdefault(pid, []).append(inode)
    return out
