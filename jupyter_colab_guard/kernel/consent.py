"""The "Still run the code / Cancel" choice for a ``warn`` finding."""

from __future__ import annotations

import threading
from typing import Any

from .warning import Notice

PROMPT = "Still run the code? Type 'run' to run it anyway, or 'cancel' [cancel]: "
RUN_ANSWERS = frozenset({"run", "r", "still run", "still run the code", "y", "yes"})


def server_granted(kernel: Any) -> set[str]:
    """The warn rules the user consented to in the server's dialog for the running
    request (``metadata.colab_guard.consent``). The server drops that field from every
    message a client sends and sets it only after the user answered "Run anyway", so a
    kernel behind a guarded server can trust it (docs/kernel-server-protocol.md)."""
    try:
        metadata = kernel.get_parent("shell").get("metadata") or {}
        granted = metadata["colab_guard"]["consent"]["rules"]
    except Exception:
        return set()
    return {r for r in granted if isinstance(r, str)} if isinstance(granted, list) else set()


def can_ask(kernel: Any) -> bool:
    """True when the frontend allows stdin and we are on the executing thread."""
    return (
        kernel is not None
        and bool(getattr(kernel, "_allow_stdin", False))
        and threading.current_thread() is threading.main_thread()
    )


def ask(kernel: Any, notice: Notice, default: str) -> tuple[str, str]:
    """Show the warning and ask. Returns (choice "run"|"cancel", how "asked"|"headless")."""
    if not can_ask(kernel):
        return default, "headless"
    notice.show()
    try:
        answer = kernel.raw_input(PROMPT)
    except KeyboardInterrupt:
        return "cancel", "asked"
    except Exception:  # StdinNotImplementedError, EOFError, a closed socket
        return default, "headless"
    choice = "run" if str(answer).strip().lower() in RUN_ANSWERS else "cancel"
    return choice, "asked"
