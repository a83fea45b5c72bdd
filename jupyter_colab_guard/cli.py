"""`colab-guard`: scan notebooks and files; validate, test and explain policies."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, lab
from .analysis import Analyzer, Finding
from .analysis.findings import action_rank
from .analysis.pyscan import Memory
from .monitor import command as monitor
from .policy import Policy, PolicyError, load_policy
from .policy.model import Combinator, Leaf, Matcher

SUFFIXES = (".ipynb", ".py", ".sh", ".bash", ".ipy")
LEVELS = {"block": "error", "warn": "warning", "log": "note"}


@dataclass(frozen=True, slots=True)
class Located:
    path: str
    cell: int | None
    finding: Finding


# -- reading inputs ---------------------------------------------------------------
def iter_files(paths: Sequence[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if (
                    child.suffix in SUFFIXES
                    and child.is_file()
                    and ".ipynb_checkpoints" not in child.parts
                ):
                    yield child
        else:
            yield path


def notebook_cells(text: str) -> list[tuple[int, str]]:
    """(index among all cells, source) of each code cell; outputs are never read."""
    data = json.loads(text)
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list):
        raise ValueError("not a notebook: no 'cells' list")
    out: list[tuple[int, str]] = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        out.append((index, "".join(source) if isinstance(source, list) else str(source)))
    return out


def scan_path(analyzer: Analyzer, path: Path, budget: float | None = None) -> list[Located]:
    """Findings of one file; ``budget``: seconds of deep analysis per cell (past it the
    cell gets the policy's ``on_timeout``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        session = analyzer.session()
        return [
            Located(str(path), index, f)
            for index, source in notebook_cells(text)
            for f in session.check(source, budget)
        ]
    if path.suffix in (".sh", ".bash"):
        text = "%%bash\n" + text  # a shell script is checked as a %%bash cell
        found = analyzer.check(text, budget=budget)
        return [Located(str(path), None, _shift(f, -1)) for f in found]
    return [Located(str(path), None, f) for f in analyzer.check(text, budget=budget)]


def _shift(finding: Finding, lines: int) -> Finding:
    data = finding.to_dict()
    data["line"] = max(1, finding.line + lines)
    return Finding(**data)


# -- output -------------------------------------------------------------------------
def as_json(found: list[Located], errors: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "version": 1,
        "findings": [
            {
                "path": x.path,
                "cell": x.cell,
                "line": x.finding.line,
                "column": x.finding.column,
                "category": x.finding.category,
                "rule": x.finding.rule,
                "action": x.finding.action,
                "severity": x.finding.severity,
                "message": x.finding.message,
            }
            for x in found
        ],
        "errors": errors,
    }


def as_sarif(found: list[Located], errors: list[dict[str, str]], policy: Policy) -> dict[str, Any]:
    rule_ids = sorted({x.finding.rule for x in found})
    rules = policy.rules_by_id
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "colab-guard",
                        "version": __version__,
                        "rules": [
                            {
                                "id": rid,
                                "shortDescription": {
                                    "text": rules[rid].message if rid in rules else rid
                                },
                                "properties": {
                                    "category": rules[rid].category if rid in rules else "analysis"
                                },
                            }
                            for rid in rule_ids
                        ],
                    }
                },
                "results": [
                    {
                        "ruleId": x.finding.rule,
                        "level": LEVELS[x.finding.action],
                        "message": {
                            "text": x.finding.message
                            + (f" (cell {x.cell})" if x.cell is not None else "")
                        },
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": x.path},
                                    "region": {
                                        "startLine": x.finding.line,
                                        "startColumn": x.finding.column,
                                    },
                                }
                            }
                        ],
                        "properties": {
                            "cell": x.cell,
                            "category": x.finding.category,
                            "severity": x.finding.severity,
                            "action": x.finding.action,
                        },
                    }
                    for x in found
                ],
                "invocations": [
                    {
                        "executionSuccessful": not errors,
                        "toolExecutionNotifications": [
                            {"level": "error", "message": {"text": f"{e['path']}: {e['message']}"}}
                            for e in errors
                        ],
                    }
                ],
            }
        ],
    }


def as_text(found: list[Located], errors: list[dict[str, str]]) -> str:
    lines = []
    for x in found:
        where = f"{x.path}" + (f" [cell {x.cell}]" if x.cell is not None else "")
        f = x.finding
        lines.append(
            f"{where}:{f.line}:{f.column}: {f.action.upper()} {f.category}/{f.rule}: "
            f"{f.message}" + (f"  [{f.evidence}]" if f.evidence else "")
        )
    lines.extend(f"{e['path']}: error: {e['message']}" for e in errors)
    lines.append(f"{len(found)} finding(s), {len(errors)} error(s)")
    return "\n".join(lines)


# -- commands -----------------------------------------------------------------------
def _load(path: str | None) -> Policy:
    return load_policy(path)


def cmd_check(args: argparse.Namespace) -> int:
    policy = _load(args.policy)
    analyzer = Analyzer(policy)
    found: list[Located] = []
    errors: list[dict[str, str]] = []
    for path in iter_files(args.paths):
        try:
            found.extend(scan_path(analyzer, path, args.budget))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            errors.append({"path": str(path), "message": f"cannot read: {exc}"})
    if args.format == "json":
        print(json.dumps(as_json(found, errors)))
    elif args.format == "sarif":
        print(json.dumps(as_sarif(found, errors, policy), indent=2))
    else:
        print(as_text(found, errors))
    if any(action_rank(x.finding.action) >= action_rank("warn") for x in found):
        return 1
    return 2 if errors else 0


def cmd_validate(args: argparse.Namespace) -> int:
    policy = _load(args.file)
    for warning in policy.warnings:
        print(f"warning: {warning}")
    print(
        f"{policy.path}: OK: {len(policy.categories)} categories, {len(policy.rules)} rules, "
        f"{len(policy.exceptions)} exceptions"
    )
    return 0


def run_examples(policy: Policy) -> list[str]:
    """Every rule's example cells; returns the failures in words."""
    analyzer = Analyzer(policy)
    failures = []
    for rule in policy.rules:
        for cell in rule.examples_match:
            got = {f.rule for f in analyzer.analyse(cell, Memory(), None).findings}
            if rule.id not in got:
                failures.append(f"{rule.id}: should match but did not: {cell!r}")
        for cell in rule.examples_no_match:
            got = {f.rule for f in analyzer.analyse(cell, Memory(), None).findings}
            if rule.id in got:
                failures.append(f"{rule.id}: should not match but did: {cell!r}")
    return failures


def cmd_test(args: argparse.Namespace) -> int:
    policy = _load(args.file)
    failures = run_examples(policy)
    total = sum(len(r.examples_match) + len(r.examples_no_match) for r in policy.rules)
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"{total - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


def describe(matcher: Matcher) -> str:
    if isinstance(matcher, Combinator):
        if matcher.op == "not":
            return f"NOT ({describe(matcher.children[0])})"
        joiner = " AND " if matcher.op == "all" else " OR "
        return "(" + joiner.join(describe(c) for c in matcher.children) + ")"
    return _describe_leaf(matcher)


def _describe_leaf(leaf: Leaf) -> str:
    names = ", ".join(leaf.names)
    pattern = leaf.pattern.pattern if leaf.pattern else ""
    if leaf.kind == "import":
        return f"imports {names}"
    if leaf.kind == "call":
        conds = [f"argument {i + 1} matches /{p.pattern}/" for i, p in leaf.args]
        conds += [f"{k}= matches /{p.pattern}/" for k, p in leaf.kwargs]
        return f"calls {names}" + (f" where {' and '.join(conds)}" if conds else "")
    if leaf.kind == "shell":
        who = "any program" if "*" in leaf.names else f"a program named {names}"
        return f"runs {who}" + (f" with arguments matching /{pattern}/" if pattern else "")
    if leaf.kind == "install":
        via = f" with {', '.join(leaf.managers)}" if leaf.managers else ""
        return f"installs {names}{via}"
    if leaf.kind == "url":
        return f"fetches a URL matching /{pattern}/"
    if leaf.kind == "string":
        return f"holds text matching /{pattern}/"
    if leaf.kind == "binary":  # judged at run time, on the bytes of the executable
        some = "" if len(leaf.names) == 1 else f"at least {leaf.minimum} of: "
        return f"runs an executable holding {some}{names}"
    if leaf.kind == "listen":  # judged at run time, on the sockets a process listens on
        spans = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in leaf.spans)
        where = "any address" if leaf.addresses == "any" else "a non-loopback address"
        return f"listens on port {spans} on {where}"
    ports = ", ".join(str(p) for p in leaf.ports)
    parts = [f"host /{pattern}/" if pattern else "", f"port {ports}" if ports else ""]
    return "connects to " + " on ".join(p for p in parts if p)


def cmd_explain(args: argparse.Namespace) -> int:
    policy = _load(args.file)
    print(f"Policy {policy.name!r} ({policy.path})")
    if policy.tiers:
        print(f"Tiers: {', '.join(policy.tiers)} (no tier given = {policy.tiers[0]})")
    print(f"When a cell cannot be fully analysed: {policy.on_error}")
    print(f"When a cell cannot be checked in time: {policy.on_timeout}")
    for category in policy.categories.values():
        tiers = f" [tiers: {', '.join(category.tiers)}]" if category.tiers else ""
        print(f"\n## {category.title} ({category.id}){tiers}")
        print(f"   {category.description}")
        print(f"   default: {category.action}, severity {category.severity}")
        for rule in (r for r in policy.rules if r.category == category.id):
            print(f"   - {rule.id} -> {rule.action.upper()} ({rule.severity}): {rule.message}")
            print(f"     when the cell {describe(rule.match)}")
    for exc in policy.exceptions:
        who = ", ".join(
            [*exc.users, *(f"group {g}" for g in exc.groups), *(f"tier {t}" for t in exc.tiers)]
        )
        what = ", ".join([*exc.categories, *exc.rules])
        print(f"\nException {exc.id}: {who} may do {what}: {exc.reason}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colab-guard", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check notebooks, .py and .sh files or directories")
    check.add_argument("--policy", help="policy YAML (default: the shipped Colab policy)")
    check.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    check.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="seconds of deep analysis per cell; past it the cell is reported as "
        "analysis.timeout with the policy's on_timeout action (default 10)",
    )
    check.add_argument("paths", nargs="+")
    check.set_defaults(func=cmd_check)
    policy = sub.add_parser("policy", help="validate, test or explain a policy")
    psub = policy.add_subparsers(dest="policy_command", required=True)
    for name, func, text in (
        ("validate", cmd_validate, "report every problem of a policy"),
        ("test", cmd_test, "run every rule's example cells"),
        ("explain", cmd_explain, "describe the policy in words"),
    ):
        p = psub.add_parser(name, help=text)
        p.add_argument("file", nargs="?", help="policy YAML (default: the shipped policy)")
        p.set_defaults(func=func)
    lab.add_parser(sub)
    monitor.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except PolicyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in the policy", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `colab-guard policy explain | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
