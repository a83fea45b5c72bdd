"""Reports to the server: POST with the kernel's token, retried, never blocking a cell."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kernel_client import audit_events, execute, make_workdir, running_kernel

from jupyter_colab_guard.kernel.reports import PROTOCOL_FIELDS

pytestmark = pytest.mark.analyzer


class Collector(ThreadingHTTPServer):
    received: list[dict[str, Any]]
    attempts: int


class Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.attempts += 1
        if self.server.attempts == 1:  # slow and failing: the kernel must retry, not wait
            time.sleep(2)
            self.send_response(500)
            self.end_headers()
            return
        self.server.received.append(
            {"path": self.path, "auth": self.headers["Authorization"], "body": json.loads(body)}
        )
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    srv = Collector(("127.0.0.1", 0), Handler)
    srv.received, srv.attempts = [], 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def test_findings_are_posted_with_the_token(tmp_path: Path, collector: Collector) -> None:
    work = make_workdir(tmp_path)
    url = f"http://127.0.0.1:{collector.server_port}/colab-guard/api/kernel/reports"
    env = {"COLAB_GUARD_REPORT_URL": url, "COLAB_GUARD_REPORT_TOKEN": "s3cret"}
    code = "!./forbidden-tool --reported"
    with running_kernel(work, env=env) as kc:
        start = time.monotonic()
        r = execute(kc, code)
        took = time.monotonic() - start
        assert r.status == "error"
        assert took < 1.5  # the failing, slow server did not hold the cell
        deadline = time.monotonic() + 15

        def posted() -> list[dict[str, Any]]:
            return [e for p in collector.received for e in p["body"]["events"]]

        while not any(e["kind"] == "finding" for e in posted()) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert collector.attempts >= 2
    post = collector.received[0]
    assert post["path"] == "/colab-guard/api/kernel/reports"
    assert post["auth"] == "Bearer s3cret"
    # the guard announced itself when it was installed, with its policy version
    armed = [e for e in posted() if e["kind"] == "armed"]
    assert len(armed) == 1 and armed[0]["policy_version"]
    events = [e for e in posted() if e["kind"] != "armed"]
    assert len(events) == 1
    event = events[0]
    assert set(event) == set(PROTOCOL_FIELDS)
    assert event["kind"] == "finding" and event["rule"] == "test-forbidden-tool"
    assert event["cell_hash"] == hashlib.sha256(code.encode()).hexdigest()
    assert event["execution_count"] == r.reply["execution_count"]
    logged = [e["rule"] for e in audit_events(work) if e["kind"] != "armed"]
    assert logged == ["test-forbidden-tool"]  # also logged
