"""The operator's webhook: a JSON POST on suspensions and appeals.

``send`` only queues the notification; one thread of its own posts it, retrying with
exponential backoff, so a slow or dead receiver never holds up a check, a page or the
event loop. Failures are logged (the server's logger); nothing is raised to the caller.

Body: ``{"event", "id", "time", "service", "user", ...}`` (docs/api.md). With a shared
secret the header ``X-Colab-Guard-Signature: sha256=<hex>`` carries the HMAC-SHA256 of
the exact body bytes under that secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

EVENTS = ("suspended", "appeal.new", "appeal.accepted", "appeal.rejected")
SIGNATURE_HEADER = "X-Colab-Guard-Signature"
EVENT_HEADER = "X-Colab-Guard-Event"
DELIVERY_HEADER = "X-Colab-Guard-Delivery"
MAX_QUEUED = 1000  # notifications waiting; more are dropped, with an error logged


def signature(secret: str, body: bytes) -> str:
    """The value of the signature header for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook:
    def __init__(
        self,
        url: str,
        *,
        secret: str = "",
        service: str = "",
        retries: int = 5,
        backoff: float = 2.0,
        timeout: float = 10.0,
        log: logging.Logger | None = None,
    ) -> None:
        """``retries``: further attempts after the first; the n-th waits
        ``backoff * 2 ** (n - 1)`` seconds."""
        self.url = url
        self.secret = secret
        self.service = service
        self.retries = max(0, retries)
        self.backoff = max(0.0, backoff)
        self.timeout = timeout
        self.log = log or logging.getLogger(__name__)
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(MAX_QUEUED)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, event: str, user: str, **data: Any) -> None:
        """Queue one notification (never blocks, never raises)."""
        if event not in EVENTS:
            self.log.error("colab-guard webhook: unknown event %r not sent", event)
            return
        delivery = uuid.uuid4().hex
        payload = {
            "event": event,
            "id": delivery,
            "time": datetime.now(UTC).isoformat(),
            "service": self.service,
            "user": user,
            **data,
        }
        try:
            body = json.dumps(payload, default=str).encode()
            self._ensure_thread()
            self._queue.put_nowait((delivery, body))
        except queue.Full:
            self.log.error("colab-guard webhook: queue full, %s for %s dropped", event, user)
        except Exception:
            self.log.exception("colab-guard webhook: could not queue %s", event)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="colab-guard-webhook", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(*item)
            except Exception:  # a bug here must not end the thread
                self.log.exception("colab-guard webhook: delivery failed")
            finally:
                self._queue.task_done()

    def _deliver(self, delivery: str, body: bytes) -> bool:
        event = json.loads(body)["event"]
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "jupyter-colab-guard",
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        for attempt in range(self.retries + 1):
            if attempt:
                if self._stop.wait(self.backoff * 2 ** (attempt - 1)):
                    self.log.error("colab-guard webhook: %s %s not sent", event, delivery)
                    return False
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    r.read()
                return True
            except urllib.error.HTTPError as err:
                why = f"HTTP {err.code}"
            except (OSError, ValueError) as err:
                why = repr(err)
            self.log.warning(
                "colab-guard webhook: %s %s attempt %d/%d failed: %s",
                event, delivery, attempt + 1, self.retries + 1, why,
            )  # fmt: skip
        self.log.error(
            "colab-guard webhook: %s %s not delivered after %d attempts",
            event, delivery, self.retries + 1,
        )  # fmt: skip
        return False

    def idle(self, timeout: float = 10.0) -> bool:
        """Tests: wait until everything queued was handled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.05)
        return False
