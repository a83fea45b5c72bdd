"""A process judged by the same policy as cells: its command line, the script an
interpreter runs, and the content of its executable."""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable

from ..analysis import Analyzer
from ..analysis.findings import Finding
from ..policy import Identity
from .procs import Proc

MAX_SCRIPT = 1 << 20  # bytes of a script file read
SCRIPT_BUDGET = 2.0  # seconds of deep analysis for one script
_SHELL = re.compile(r"^(?:ba|da|z|k|a)?sh$")
_PYTHON = re.compile(r"^python[0-9.]*$")
# interpreters whose program text the analyzer reads: how it is read
INTERPRETERS: dict[str, str] = {"perl": "shell", "node": "shell", "ruby": "shell", "php": "shell"}


def interpreter(argv: tuple[str, ...]) -> str | None:
    """'shell', 'python' or None for what argv[0] names."""
    if not argv:
        return None
    name = posixpath.basename(argv[0])
    if _SHELL.match(name):
        return "shell"
    if _PYTHON.match(name):
        return "python"
    return INTERPRETERS.get(name)


def script_of(proc: Proc) -> tuple[str, str] | None:
    """(kind, program text) of an interpreter's -c text or script file; None if none."""
    kind = interpreter(proc.argv)
    if kind is None:
        return None
    args = list(proc.argv[1:])
    while args:
        arg = args.pop(0)
        if arg in ("-c", "-e", "--eval") and args:
            return kind, args[0]
        if arg == "-m":
            return None  # a module: installed code (ipykernel_launcher, pip, ...)
        if arg.startswith("-"):
            continue
        path = arg if os.path.isabs(arg) else os.path.join(proc.cwd or "/", arg)
        try:
            with open(path, "rb") as f:
                return kind, f.read(MAX_SCRIPT).decode("utf-8", "replace")
        except OSError:
            return None
    return None


class ProcessJudge:
    """Findings of one process under the policy in force (``analyzer()``)."""

    def __init__(
        self,
        analyzer: Callable[[], Analyzer | None],
        scan_binary: Callable[[Analyzer, str], frozenset[str]] | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.scan_binary = scan_binary  # signatures found in an executable file

    def judge(self, proc: Proc, identity: Identity | None = None) -> list[Finding]:
        analyzer = self.analyzer()
        if analyzer is None or not proc.argv:
            return []
        findings = list(analyzer.check_command(list(proc.argv), identity))
        script = script_of(proc)
        if script is not None:
            kind, text = script
            cell = "%%bash\n" + text if kind == "shell" else text
            findings += analyzer.check(cell, identity=identity, budget=SCRIPT_BUDGET)
        if self.scan_binary is not None and proc.exe and interpreter(proc.argv) is None:
            found = self.scan_binary(analyzer, proc.exe)
            if found:
                findings += analyzer.check_binary(found, proc.exe, identity)
        return [f for f in findings if f.category != "analysis"]

    def judge_listen(self, host: str, port: int, identity: Identity | None = None) -> list[Finding]:
        """Findings of a listening socket (the policy's ``listen`` rules)."""
        analyzer = self.analyzer()
        if analyzer is None:
            return []
        return [f for f in analyzer.check_listen(host, port, identity) if f.category != "analysis"]
