"""The error a refused cell (or refused process/connection) raises."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .warning import Notice


class ProhibitedCodeError(PermissionError):
    """Raised instead of running prohibited code.

    A ``PermissionError`` so that code refused at run time (``subprocess``, ``socket``)
    fails like a denied operation, and pexpect/ptyprocess children exit cleanly.
    IPython shows ``_render_traceback_()`` instead of a Python traceback.
    """

    def __init__(self, summary: str, notice: Notice | None = None) -> None:
        super().__init__(summary)
        self.errno = errno.EACCES  # ptyprocess passes "OSError:<errno>:<msg>" from a child
        self.summary = summary
        self.notice = notice

    def __str__(self) -> str:
        return self.summary

    def _render_traceback_(self) -> list[str]:
        # IPython 9 calls this twice per error; Notice.show() displays only once
        if self.notice is not None:
            try:
                self.notice.show()
            except Exception:  # display must never break error reporting
                pass
        return [f"{type(self).__name__}: {self.summary}"]
