"""Structured events through jupyter_events (``ServerApp.event_logger``)."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).parent / "event_schemas"
BASE_ID = "https://github.com/jupyter-colab-guard/jupyter-colab-guard/events"
STRIKE = f"{BASE_ID}/strike/v1"
POLICY = f"{BASE_ID}/policy/v1"
ADMIN = f"{BASE_ID}/admin/v1"
STORE = f"{BASE_ID}/store/v1"

log = logging.getLogger(__name__)


def schema_paths() -> list[Path]:
    return sorted(SCHEMA_DIR.glob("*.json"))


class GuardEvents:
    """Registers the schemas once and emits without ever raising into the caller."""

    def __init__(self, event_logger: Any | None) -> None:
        self.logger = event_logger
        # the server's event loop: jupyter_events schedules listeners as asyncio tasks,
        # so an emit from a check thread is handed over to the loop
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        if event_logger is None:
            return
        for path in schema_paths():
            try:
                event_logger.register_event_schema(path)
            except Exception as err:  # already registered by an earlier server in-process
                log.debug("event schema %s: %s", path.name, err)

    def bind_loop(self, loop: asyncio.AbstractEventLoop, thread: int) -> None:
        self.loop, self.loop_thread = loop, thread

    def emit(self, schema_id: str, data: dict[str, Any]) -> None:
        if self.logger is None:
            return
        if self.loop is not None and threading.get_ident() != self.loop_thread:
            try:
                self.loop.call_soon_threadsafe(self._emit, schema_id, data)
                return
            except RuntimeError:  # the loop is closed: emit here
                pass
        self._emit(schema_id, data)

    def _emit(self, schema_id: str, data: dict[str, Any]) -> None:
        try:
            self.logger.emit(schema_id=schema_id, data=data)
        except Exception:  # an event pipeline problem must not break enforcement
            log.exception("colab-guard: could not emit %s", schema_id)
