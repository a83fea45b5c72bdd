"""Structured events through jupyter_events (``ServerApp.event_logger``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).parent / "event_schemas"
BASE_ID = "https://events.jupyter.org/jupyter_colab_guard"
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
        if event_logger is None:
            return
        for path in schema_paths():
            try:
                event_logger.register_event_schema(path)
            except Exception as err:  # already registered by an earlier server in-process
                log.debug("event schema %s: %s", path.name, err)

    def emit(self, schema_id: str, data: dict[str, Any]) -> None:
        if self.logger is None:
            return
        try:
            self.logger.emit(schema_id=schema_id, data=data)
        except Exception:  # an event pipeline problem must not break enforcement
            log.exception("colab-guard: could not emit %s", schema_id)
