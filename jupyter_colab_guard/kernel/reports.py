"""Where events go: the local audit log (JSON lines) and, with a server, a POST.

The POST runs in a background thread with retries and never blocks a cell; the audit
log line is written before the call returns (a local append).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

# fields of one event in the kernel -> server protocol (docs/kernel-server-protocol.md)
PROTOCOL_FIELDS = (
    "kind", "category", "rule", "action", "severity", "message",
    "cell_hash", "execution_count", "timestamp", "choice", "detail", "policy_version",
)  # fmt: skip
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
POST_TIMEOUT = 5.0


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Reporter:
    """Appends events to the audit log and sends them to the server if configured."""

    def __init__(self, log_path: str, url: str = "", token: str = "", kernel_id: str = "") -> None:
        self.log_path = log_path
        self.url = url
        self.token = token
        self.kernel_id = kernel_id
        self.pid = os.getpid()
        self.failures = 0  # POST batches given up after all retries
        self._lock = threading.Lock()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending = 0

    # -- writing ------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Record one event (fields per the protocol, plus local extras)."""
        event.setdefault("timestamp", now_iso())
        event.setdefault("kernel_id", self.kernel_id)
        if os.getpid() != self.pid:
            self._emit_forked(event)
            return
        self._append(event)
        if self.url:
            body = {k: event.get(k) for k in PROTOCOL_FIELDS}
            with self._lock:
                self._pending += 1
                self._start()
            self._queue.put(body)

    def _emit_forked(self, event: dict[str, Any]) -> None:
        """In a forked child (``os.fork`` then ``exec``): no reporter thread, and the lock
        may have been held by a thread that is gone. Append and post at once, once."""
        self._lock = threading.Lock()
        self._append(event)
        if self.url:
            self._post([{k: event.get(k) for k in PROTOCOL_FIELDS}], retries=())

    def _append(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, default=str, ensure_ascii=False) + "\n"
        try:
            with self._lock:
                os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
                with open(self.log_path, "a", encoding="utf-8") as fh:
                    fh.write(line)
        except OSError:
            pass  # an unwritable log must not break the kernel

    # -- sending ------------------------------------------------------------
    def is_own_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="colab-guard-reporter", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 50:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._post(batch)
            with self._lock:
                self._pending -= len(batch)

    def _post(
        self, events: list[dict[str, Any]], retries: tuple[float, ...] = RETRY_DELAYS
    ) -> None:
        data = json.dumps({"events": events}, default=str).encode()
        problem = ""
        for delay in (0.0, *retries):
            if delay:
                time.sleep(delay)
            req = urllib.request.Request(
                self.url,
                data=data,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self.token}",
                },
            )
            try:
                with urllib.request.urlopen(req, timeout=POST_TIMEOUT) as resp:
                    if 200 <= resp.status < 300:
                        return
                    problem = f"HTTP {resp.status}"
            except urllib.error.HTTPError as err:
                problem = f"HTTP {err.code} {err.reason}"
                if err.code in (400, 401, 403, 404, 413):
                    break  # not worth retrying
            except Exception as err:
                problem = repr(err)
        self.failures += 1
        # loudly: the kernel's stderr ends up in the server's log
        kinds = ", ".join(sorted({str(e.get("kind")) for e in events}))
        if sys.__stderr__ is None:
            return
        print(
            f"colab-guard: could not report {len(events)} event(s) ({kinds}) to the server: "
            f"{problem}; they are in the local audit log {self.log_path}",
            file=sys.__stderr__,
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued POSTs are done (tests, shutdown). True when drained."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self._pending <= 0:
                    return True
            time.sleep(0.02)
        return False
