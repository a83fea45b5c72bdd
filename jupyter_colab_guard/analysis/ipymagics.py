"""IPython magics as the scanner meets them: `!`/`%sx` lines, cell magics, aliases.

A mixin of PythonScanner: `get_ipython().run_line_magic(...)` and `run_cell_magic(...)`
calls (what IPython's transformation makes of `%`, `%%` and `!`) are turned into shell
text, Python bodies or remembered files.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from typing import TYPE_CHECKING

import libcst as cst

from . import sinks
from .facts import UNKNOWN, Anchor, Value

if TYPE_CHECKING:
    from .fold import Folder
    from .pyscan import Memory
    from .shell import ShellScanner

# $$, ${name}, $name, and {expression}: IPython evaluates any expression in braces.
IPY_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][\w.]*)\}|\$([A-Za-z_]\w*)|\{([^{}\n]+)\}")


class MagicsMixin:
    folder: Folder
    memory: Memory
    shell: ShellScanner
    depth: int
    outer: Anchor | None

    def _analyse_file(self, path: str, content: str, anchor: Anchor) -> None:
        raise NotImplementedError

    def scan_python_text(
        self, text: str, anchor: Anchor, depth: int, nested_cell: bool = False
    ) -> None:
        raise NotImplementedError

    def _ipython_expand(self, text: str, anchor: Anchor | None = None) -> str:
        """IPython's `{var}` / `$var` expansion of shell lines, where values are known. An
        expression that calls something runs when the line does: it is checked as code."""
        if "$" not in text and "{" not in text:
            return text

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            expr = m.group(1) or m.group(2) or m.group(3)
            try:
                node = cst.parse_expression(expr)
            except cst.ParserSyntaxError:
                return m.group(0)
            value = self.folder.fold(node)
            if value is UNKNOWN and anchor is not None and "(" in expr:
                self.scan_python_text(expr, anchor, self.depth + 1)  # !echo {ngrok.connect(22)}
            return (
                str(value)
                if value is not UNKNOWN and not isinstance(value, list | tuple)
                else (
                    " ".join(str(v) for v in value)
                    if isinstance(value, list | tuple)
                    else m.group(0)
                )
            )

        return IPY_VAR.sub(sub, text)

    def _magic_name(self, name: str) -> str:
        seen = 0
        while name in self.memory.magic_aliases and seen < 8:
            name = self.memory.magic_aliases[name]
            seen += 1
        return name

    def _line_magic(self, args: tuple[Value, ...], anchor: Anchor) -> None:
        if len(args) == 1 and isinstance(args[0], str):  # get_ipython().magic("pip install x")
            name, _, line = args[0].lstrip("%").partition(" ")
        elif len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            name, line = args[0], args[1]
        else:
            return
        name = self._magic_name(name)
        line = self._ipython_expand(line, anchor)
        if name in sinks.SHELL_LINE_MAGICS:
            self.shell.scan(line, anchor, self.depth)
        elif name in sinks.INSTALL_MAGICS:
            self.shell.scan(f"{sinks.INSTALL_MAGICS[name]} {line}", anchor, self.depth)
        elif name == "run":
            parts = line.split()
            script = next((p for p in parts if not p.startswith("-")), None)
            if script and script in self.memory.files:
                self._analyse_file(script, self.memory.files[script], anchor)
        elif name == "alias_magic":
            parts = [p for p in line.split() if not p.startswith("-")]
            if len(parts) >= 2:
                self.memory.magic_aliases[parts[0]] = parts[1].lstrip("%")
        elif name == "alias":
            alias, _, command = line.strip().partition(" ")
            if command:
                self.memory.shell_aliases[alias] = command
                self.shell.scan(command.replace("%s", "").replace("%l", ""), anchor, self.depth)
        elif name in ("env", "set_env"):  # %env POOL=host:3333 / %env POOL host:3333
            match = re.match(r"\s*([A-Za-z_]\w*)(?:\s*=|\s)(.*)", line)
            value = match.group(2).strip() if match else ""
            if match and value:
                self.memory.environ[match.group(1)] = value
        elif name in self.memory.shell_aliases:
            self.shell.scan(f"{self.memory.shell_aliases[name]} {line}", anchor, self.depth)

    def _cell_magic(self, args: tuple[Value, ...], anchor: Anchor) -> None:
        if len(args) < 3 or not all(isinstance(a, str) for a in args[:3]):
            return
        name, line, body = self._magic_name(str(args[0])), str(args[1]), str(args[2])
        body_anchor = (
            anchor
            if self.outer is not None
            else dataclasses.replace(anchor, line_offset=anchor.line_offset + 1)
        )
        if name in sinks.SHELL_CELL_MAGICS or (
            name == "script"
            and line.split()[:1]
            and posixpath.basename(line.split()[0]) in ("bash", "sh", "zsh", "dash")
        ):
            self.shell.scan(body, body_anchor, self.depth)
        elif name in sinks.PYTHON_CELL_MAGICS or (name == "script" and "python" in line):
            self.scan_python_text(body, body_anchor, self.depth + 1, nested_cell=True)
        elif name == "writefile":
            parts = [p for p in line.split() if not p.startswith("-")]
            if parts:
                path = parts[0].strip("'\"")
                append = "-a" in line.split() or "--append" in line.split()
                self.memory.files[path] = (self.memory.files.get(path, "") if append else "") + body
                self._analyse_file(path, body, body_anchor)
        elif name in sinks.INSTALL_MAGICS:
            self.shell.scan(f"{sinks.INSTALL_MAGICS[name]} {line}", anchor, self.depth)
        elif name not in sinks.INERT_CELL_MAGICS:
            self.shell.scan(body, body_anchor, self.depth)  # unknown magic: check as shell
