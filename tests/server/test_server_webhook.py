"""The operator's webhook, against a real local HTTP server that fails the first attempt:
retried with backoff, signed, never blocking; sent on suspension and on appeals."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jupyter_colab_guard.server.webhook import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Webhook,
)

SECRET = "s3cret-shared"
BLOCKED = "!forbidden-tool --go"


class Receiver:
    """A local HTTP server: answers 500 to the first ``fail_first`` requests, then 200
    (after ``delay`` seconds); keeps every request's headers and body."""

    def __init__(self, fail_first: int = 1, delay: float = 0.0) -> None:
        self.fail_first, self.delay = fail_first, delay
        self.requests: list[tuple[int, dict[str, str], bytes]] = []  # (status sent, ...)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(outer.delay)
                with outer.lock:
                    status = 500 if len(outer.requests) < outer.fail_first else 200
                    outer.requests.append((status, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        """Bodies of the requests answered 200."""
        with self.lock:
            return [json.loads(b) for s, _, b in self.requests if s == 200]

    def wait(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.delivered()) >= n:
                return self.delivered()
            time.sleep(0.05)
        raise AssertionError(f"{len(self.delivered())} deliveries, {self.requests}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def signed(headers: dict[str, str], body: bytes) -> bool:
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get(SIGNATURE_HEADER, ""), want)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_hook(url: str, **kw: Any) -> tuple[Webhook, Records]:
    log = logging.getLogger(f"test-webhook-{time.monotonic_ns()}")
    records = Records()
    log.addHandler(records)
    log.setLevel(logging.DEBUG)
    return Webhook(url, secret=SECRET, service="TestLab", backoff=0.1, log=log, **kw), records


def test_retried_after_a_failure_signed_and_logged(receiver: Receiver) -> None:
    hook, records = make_hook(receiver.url)
    hook.send("appeal.new", "alice", appeal={"id": 7, "message": "mine"})
    (body,) = receiver.wait(1)
    assert [s for s, _, _ in receiver.requests] == [500, 200]  # the first attempt failed
    (_, h1, b1), (_, h2, b2) = receiver.requests
    assert b1 == b2 and h1[DELIVERY_HEADER] == h2[DELIVERY_HEADER]  # the same delivery
    assert signed(h2, b2) and h2[EVENT_HEADER] == "appeal.new"
    assert not signed({SIGNATURE_HEADER: h2[SIGNATURE_HEADER]}, b2 + b" ")  # control
    assert body["event"] == "appeal.new" and body["user"] == "alice"
    assert body["service"] == "TestLab" and body["appeal"] == {"id": 7, "message": "mine"}
    assert body["id"] == h2[DELIVERY_HEADER] and body["time"]
    assert any(lvl == logging.WARNING and "HTTP 500" in msg for lvl, msg in records.lines)
    hook.stop()


def test_never_blocks_and_gives_up_loudly() -> None:
    slow = Receiver(fail_first=0, delay=1.5)
    try:
        hook, _ = make_hook(slow.url)
        t0 = time.perf_counter()
        for i in range(3):
            hook.send("suspended", f"user{i}", level="suspended")
        assert time.perf_counter() - t0 < 0.05  # queued, not sent, by the caller
        assert len(slow.wait(1, timeout=10)) >= 1
        hook.stop()
    finally:
        slow.close()
    # nobody listening: every attempt fails, the last one says so as an error
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    hook, records = make_hook(dead, retries=2)
    hook.send("suspended", "bob", level="suspended")
    assert hook.idle(10)
    errors = [msg for lvl, msg in records.lines if lvl == logging.ERROR]
    assert len(errors) == 1 and "not delivered after 3 attempts" in errors[0]
    assert sum(1 for lvl, _ in records.lines if lvl == logging.WARNING) == 3
    hook.stop()


# -- on a real server: suspension and appeals ------------------------------------------


@pytest.fixture
def guard_config(receiver: Receiver) -> dict[str, Any]:
    return {
        "webhook_url": receiver.url,
        "webhook_secret": SECRET,
        "webhook_backoff": 0.1,
        "escalation": [{"level": "warning", "strikes": 1}, {"level": "suspended", "strikes": 2}],
    }


async def test_server_calls_the_webhook_on_suspension_and_appeals(
    guard, fetch_json, receiver: Receiver
) -> None:
    for _ in range(2):
        assert guard.check_execute(user_obj="bob", kernel_id="k", code=BLOCKED).refuse
    assert guard.status("bob").level == "suspended"
    (suspended,) = receiver.wait(1)
    assert (suspended["event"], suspended["user"], suspended["level"]) == (
        "suspended", "bob", "suspended"
    )  # fmt: skip
    assert receiver.requests[0][0] == 500  # ... after a failed first attempt

    async def appeal(message: str) -> int:
        made = await fetch_json("colab-guard", "api", "appeals", user="bob", method="POST",
                                body={"message": message})  # fmt: skip
        return int(made["id"])

    a1, a2 = await appeal("please"), await appeal("again")
    for aid, verdict in ((a1, "accept"), (a2, "reject")):
        await fetch_json("colab-guard", "api", "admin", "appeals", str(aid), verdict,
                         user="root", method="POST", body={"note": f"{verdict}ed"})  # fmt: skip
    got = receiver.wait(5)
    events = [(b["event"], b.get("appeal", {}).get("id")) for b in got[1:]]
    assert sorted(events) == sorted(
        [("appeal.new", a1), ("appeal.new", a2), ("appeal.accepted", a1), ("appeal.rejected", a2)]
    )
    accepted = next(b for b in got if b["event"] == "appeal.accepted")
    assert accepted["appeal"]["note"] == "accepted" and accepted["voided_event"]
    assert guard.status("bob").level == "warning"  # one strike less: no longer suspended
    rejected = next(b for b in got if b["event"] == "appeal.rejected")
    assert rejected["appeal"]["status"] == "rejected" and rejected["voided_event"] is None
    assert all(signed(h, b) for s, h, b in receiver.requests if s == 200)


def test_only_http_urls_are_accepted() -> None:
    from jupyter_colab_guard.server.app import ColabGuardApp

    app = ColabGuardApp()
    app.webhook_url = "https://hooks.example/guard"  # control
    for bad in ("file:///etc/passwd", "ftp://x/", "hooks.example/guard"):
        with pytest.raises(ValueError, match="http"):
            app.webhook_url = bad
    assert app.webhook_url == "https://hooks.example/guard"
