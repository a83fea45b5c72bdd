"""A process judged by the same policy as cells: its command line, the script an
interpreter runs, and the content of its executable."""

from __future__ import annotations

import os
import posixpath
import re
import stat
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


def in_view(proc: Proc, path: str) -> str:
    """``path`` as the process sees it, opened from here through /proc/PID (root, cwd):
    right for a process in another mount namespace (a container seen from the host)."""
    if os.path.isabs(path):
        return f"/proc/{proc.pid}/root{path}"
    return f"/proc/{proc.pid}/cwd/{path}"


def read_script(path: str) -> str | None:
    """A script's text (bounded); None for what is not a regular file (a FIFO must
    never hold the watcher up) or cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return f.read(MAX_SCRIPT).decode("utf-8", "replace")
        except OSError:
            return None


def script_of(proc: Proc, through_proc: bool = False) -> tuple[str, str] | None:
    """(kind, program text) of an interpreter's -c text or script file; None if none.
    ``through_proc``: the file is opened as the process sees it (``in_view``)."""
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
        if through_proc:
            path = in_view(proc, arg)
        else:
            path = arg if os.path.isabs(arg) else os.path.join(proc.cwd or "/", arg)
        text = read_script(path)
        return None if text is None else (kind, text)
    return None


def signature_scanner() -> Callable[[Analyzer, str], frozenset[str]] | None:
    """``scan_binary`` for a ProcessJudge: the policy's binary signatures found in an
    executable, one scanner (and its cache) per policy in force; None when the policy
    language has no binary signatures."""
    try:
        from ..analysis.binary import SignatureScanner
    except ImportError:
        return None
    scanners: dict[int, SignatureScanner] = {}

    def scan(analyzer: Analyzer, path: str) -> frozenset[str]:
        scanner = scanners.get(id(analyzer))
        if scanner is None:
            scanners.clear()  # one policy at a time
            scanner = scanners[id(analyzer)] = SignatureScanner(analyzer.binary_signatures)
        return scanner.scan(path)

    return scan


class ProcessJudge:
    """Findings of one process under the policy in force (``analyzer()``)."""

    def __init__(
        self,
        analyzer: Callable[[], Analyzer | None],
        scan_binary: Callable[[Analyzer, str], frozenset[str]] | None = None,
        *,
        through_proc: bool = False,
    ) -> None:
        """``through_proc``: read executables and scripts through /proc/PID (the
        executable as /proc/PID/exe), as a root monitor must for processes in other
        mount namespaces (containers)."""
        self.analyzer = analyzer
        self.scan_binary = scan_binary  # signatures found in an executable file
        self.through_proc = through_proc

    def judge(self, proc: Proc, identity: Identity | None = None) -> list[Finding]:
        analyzer = self.analyzer()
        if analyzer is None or not proc.argv:
            return []
        findings = list(analyzer.check_command(list(proc.argv), identity))
        script = script_of(proc, self.through_proc)
        if script is not None:
            kind, text = script
            cell = "%%bash\n" + text if kind == "shell" else text
            findings += analyzer.check(cell, identity=identity, budget=SCRIPT_BUDGET)
        if self.scan_binary is not None and proc.exe and interpreter(proc.argv) is None:
            exe = f"/proc/{proc.pid}/exe" if self.through_proc else proc.exe
            found = self.scan_binary(analyzer, exe)
            if found:
                findings += analyzer.check_binary(found, proc.exe, identity)
        return [f for f in findings if f.category != "analysis"]

    def judge_listen(self, host: str, port: int, identity: Identity | None = None) -> list[Finding]:
        """Findings of a listening socket (the policy's ``listen`` rules)."""
        analyzer = self.analyzer()
        if analyzer is None:
            return []
        return [f for f in analyzer.check_listen(host, port, identity) if f.category != "analysis"]
