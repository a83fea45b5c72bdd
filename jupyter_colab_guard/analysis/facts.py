"""What the analyzer extracts from a cell, before any rule looks at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import libcst as cst

Value = Any  # a folded constant: str, bytes, int, float, bool, None, list/tuple of those


@dataclass(slots=True)
class Anchor:
    """Where a fact comes from: a node of the parsed cell plus lines below it."""

    node: cst.CSTNode | None = None
    line_offset: int = 0
    line: int = 0  # explicit original line (fallback scanner), 0 = use node
    module: cst.Module | None = None  # the snippet the node belongs to
    base: int = 0  # lines of the transformed cell above the snippet
    indent: int = 0  # columns the snippet was dedented by
    looped: int = 0  # the code runs inside an endless loop (loops.FOREVER or COUNTED)


@dataclass(slots=True)
class Fact:
    kind: str  # import | call | shell | install | url | string | connect
    name: str = ""  # module, qualified name, program, package
    text: str = ""  # shell: arguments joined; url; string value; connect: host
    manager: str = ""  # install: pip | conda | apt | npm
    args: tuple[Value, ...] = ()  # call: folded positional arguments (Unknown if not literal)
    kwargs: dict[str, Value] = field(default_factory=dict)
    guessed: tuple[str, ...] = ()  # call: arguments that are a `for` loop's item ("password")
    port: int | None = None  # connect
    evidence: str = ""
    anchor: Anchor = field(default_factory=Anchor)
    source: cst.CSTNode | None = None  # rendered as the evidence only if a rule matches
    remembered: bool = False  # from an earlier cell: context for this cell, never a finding

    def shown(self) -> str:
        """The evidence text; code is rendered from ``source`` on first use (codegen is slow)."""
        if not self.evidence and self.source is not None:
            self.evidence = cst.Module([]).code_for_node(self.source)[:200]
        return self.evidence


class Unknown:
    """Marker for a value the analyzer cannot fold."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = Unknown()


@dataclass(slots=True)
class FactSet:
    facts: list[Fact] = field(default_factory=list)
    incomplete: list[tuple[Anchor, str]] = field(default_factory=list)
    expanded: set[tuple[str, str]] = field(default_factory=set)  # user wrapper calls seen

    def add(self, fact: Fact) -> None:
        self.facts.append(fact)

    def of(self, kind: str) -> list[Fact]:
        return [f for f in self.facts if f.kind == kind]
