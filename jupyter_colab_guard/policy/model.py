"""Data classes of a loaded policy. Pure data: matching lives in analysis.engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..analysis.findings import Finding
    from .regex import Regex


# Kinds of loop around a call, weakest first (Leaf.looped, analysis.loops).
LOOP_REPEATED = 1  # counted to a number the code does not show: range(count), while i < n
LOOP_COUNTED = 2  # counted far: range(100000), a count the user types in, a clock
LOOP_FOREVER = 3  # never ends by itself: while True, itertools.count()
LOOP_ENDLESS = LOOP_COUNTED  # `looped: true`


@dataclass(frozen=True, slots=True)
class Identity:
    """Who runs the code. The server fills it from its identity provider."""

    user: str | None = None
    groups: tuple[str, ...] = ()
    tier: str | None = None


@dataclass(eq=False, slots=True)
class Leaf:
    """A single matcher. ``kind`` is one of LEAF_KINDS; ``keywords`` gate it cheaply."""

    kind: str
    names: tuple[str, ...] = ()  # modules, calls, programs, packages, repos, signatures
    managers: tuple[str, ...] = ()  # install: package managers (empty = any)
    pattern: Regex | None = None  # RE2: url/string regex, shell args regex, connect host,
    # call `like` (the called function's own name)
    args: tuple[tuple[int, Regex], ...] = ()  # call positional conditions (RE2)
    kwargs: tuple[tuple[str, Regex], ...] = ()  # call keyword conditions (RE2)
    looped: int = 0  # call: only inside a loop of at least this kind (LOOP_ENDLESS: while
    # True, itertools.count, or counted far, e.g. range(100000); LOOP_REPEATED: also a loop
    # counted to a number the code does not show, range(count)); a counted loop only for a
    # call that takes no argument from the loop's item
    guessed: Regex | None = None  # call: an argument that is a `for` loop's item, by name
    ports: tuple[int, ...] = ()  # connect ports
    minimum: int = 1  # binary: distinct signatures (names) a file must hold
    spans: tuple[tuple[int, int], ...] = ()  # listen: port ranges, inclusive (22: (22, 22))
    addresses: str = "public"  # listen: "public" (not loopback) or "any"
    keywords: tuple[str, ...] = ()  # lower-case literals any match must contain
    index: int = -1  # position in Policy.leaves, set by the loader


@dataclass(frozen=True, slots=True)
class Combinator:
    op: str  # "all" | "any" | "not"
    children: tuple[Matcher, ...]


Matcher = Leaf | Combinator

LEAF_KINDS = (
    "import",
    "call",
    "shell",
    "install",
    "url",
    "repo",
    "string",
    "connect",
    "binary",
    "listen",
)


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    title: str
    description: str
    action: str
    severity: str
    tiers: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: str
    message: str
    action: str
    severity: str
    tiers: tuple[str, ...]
    match: Matcher
    examples_match: tuple[str, ...] = ()
    examples_no_match: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class PolicyException:
    id: str
    reason: str
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()

    def selects(self, identity: Identity) -> bool:
        return bool(
            (identity.user is not None and identity.user in self.users)
            or set(identity.groups) & set(self.groups)
            or (identity.tier is not None and identity.tier in self.tiers)
        )

    def covers(self, finding: Finding) -> bool:
        return finding.category in self.categories or finding.rule in self.rules


@dataclass(slots=True)
class Policy:
    name: str
    tiers: tuple[str, ...]
    categories: dict[str, Category]
    rules: list[Rule]
    exceptions: list[PolicyException]
    on_error: str
    version: str
    on_timeout: str = "block"  # a cell the check could not finish in its time budget
    path: str | None = None
    leaves: list[Leaf] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rules_by_id: dict[str, Rule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rules_by_id = {rule.id: rule for rule in self.rules}

    def tier_of(self, identity: Identity | None) -> str | None:
        if identity is not None and identity.tier:
            return identity.tier
        return self.tiers[0] if self.tiers else None

    def applies(self, finding: Finding, identity: Identity | None) -> bool:
        """Whether a finding stands for this identity (tiers and exceptions)."""
        rule = self.rules_by_id.get(finding.rule)
        if rule is not None and rule.tiers:
            tier = self.tier_of(identity)
            if tier is not None and tier not in rule.tiers:
                return False
        if identity is None:
            return True
        return not any(e.selects(identity) and e.covers(finding) for e in self.exceptions)

    def filter(self, findings: list[Finding], identity: Identity | None) -> list[Finding]:
        return [f for f in findings if self.applies(f, identity)]
