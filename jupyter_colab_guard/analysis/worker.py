"""An analysis worker: a child process that checks cells for the server.

Started by the server (``server/workers.py``) as ``python -P -m
jupyter_colab_guard.analysis.worker FD``; requests and answers are pickled messages on
the socket FD, one at a time. It holds the analyzer of the policy in force and the
analysis sessions of the users pinned to it.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Any

from ..policy import load_policy, parse_policy
from .analyzer import Analyzer
from .pyscan import Memory

_HEADER = struct.Struct("!Q")


def send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def receive(sock: socket.socket) -> Any:
    size = _HEADER.unpack(_read(sock, _HEADER.size))[0]
    return pickle.loads(_read(sock, size))  # our own child's answers, never user data


def _read(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


@dataclass
class PolicyRef:
    """What a worker needs to build the policy in force: its version, file and text
    (text None: the shipped default)."""

    version: str
    path: str | None
    text: str | None


def memory_names(memory: Memory) -> dict[str, Any]:
    """What the prefilter reads of a session's memory (names only, never contents)."""
    return {
        "files": dict.fromkeys(memory.files, ""),
        "renames": dict.fromkeys(memory.renames, ""),
        "magic_aliases": dict.fromkeys(memory.magic_aliases, ""),
        "shell_aliases": dict.fromkeys(memory.shell_aliases, ""),
        "sink_names": set(memory.sink_names),
        "environ": dict.fromkeys(memory.environ, ""),
        "imports": set(memory.imports),
    }


class Worker:
    """The child's state: the analyzer of the policy in force and the sessions."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.analyzer: Analyzer | None = None
        self.sessions: dict[tuple[str, str], Any] = {}

    def _analyzer(self, ref: PolicyRef) -> Analyzer:
        if self.analyzer is None or ref.version != self.version:
            policy = load_policy(None) if ref.text is None else parse_policy(ref.text, ref.path)
            self.analyzer, self.version = Analyzer(policy), ref.version
            self.sessions.clear()
        return self.analyzer

    def handle(self, request: tuple[Any, ...]) -> Any:
        op = request[0]
        if op == "check":  # (op, ref, key, quiet cells, cell or None, budget, gone kernels)
            _, ref, key, quiet, cell, budget, gone = request
            if gone:
                self.sessions = {k: v for k, v in self.sessions.items() if k[0] not in gone}
            analyzer = self._analyzer(ref)
            session = self.sessions.get(key)
            if session is None:
                session = self.sessions[key] = analyzer.session()
            for earlier in quiet:
                session.check(earlier, budget)
            findings = session.check(cell, budget) if cell is not None else []
            return findings, memory_names(session.memory)
        if op == "expression":  # (op, ref, code, budget): no session
            _, ref, code, budget = request
            return self._analyzer(ref).check(code, budget=budget)
        if op == "ping":
            return os.getpid()
        raise ValueError(f"unknown request {op!r}")


def main() -> None:
    """The child: requests on the socket given as fd (argv[1]), until it closes."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    worker = Worker()
    while True:
        try:
            request = receive(sock)
        except (EOFError, OSError):
            return
        try:
            reply: tuple[str, Any] = ("ok", worker.handle(request))
        except Exception as exc:  # reported to the server, which fails closed
            reply = ("error", f"{type(exc).__name__}: {exc}")
        send(sock, reply)


if __name__ == "__main__":
    main()
