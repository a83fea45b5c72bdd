"""The process watcher: what user code starts, judged by the same policy as cells."""

from .judge import ProcessJudge, signature_scanner
from .procs import Proc, become_subreaper
from .watcher import Owner, ProcessWatcher, Verdict

__all__ = [
    "Owner",
    "Proc",
    "ProcessJudge",
    "ProcessWatcher",
    "Verdict",
    "become_subreaper",
    "signature_scanner",
]
