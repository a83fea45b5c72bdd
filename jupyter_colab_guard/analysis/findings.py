"""The result type of every check."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ACTIONS = ("log", "warn", "block")
SEVERITIES = ("low", "medium", "high", "critical")


def action_rank(action: str) -> int:
    """Order of strength: log < warn < block."""
    return ACTIONS.index(action)


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that matched one place of a cell.

    ``line`` is 1-based and ``column`` 1-based, both in the ORIGINAL cell text
    (before IPython's transformation). ``evidence`` is the text that matched.
    """

    category: str
    rule: str
    action: str
    severity: str
    message: str
    line: int
    column: int
    evidence: str = ""
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def top_finding(findings: list[Finding]) -> Finding:
    """The finding that speaks for a check: the strongest action, and of equals one of
    the policy's before one about the check itself (category ``analysis``)."""
    return max(findings, key=lambda f: (action_rank(f.action), f.category != "analysis"))


def strongest_action(findings: list[Finding]) -> str | None:
    """The strongest action among findings, or None when there are none."""
    if not findings:
        return None
    return max((f.action for f in findings), key=action_rank)
