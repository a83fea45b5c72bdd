"""`colab-guard`: scan notebooks and files; validate, test and explain policies."""

from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from . import __version__, lab, publish
from .analysis import Analyzer, Finding
from .analysis.findings import action_rank
from .analysis.pyscan import Memory
from .monitor import command as monitor
from .policy import Policy, PolicyError, load_policy
from .policy.model import LOOP_REPEATED, Combinator, Leaf, Matcher

SUFFIXES = (".ipynb", ".py", ".sh", ".bash", ".ipy")
LEVELS = {"block": "error", "warn": "warning", "log": "note"}
# GitHub code scanning reads a rule's ``security-severity`` (0.0-10.0) as its severity:
# 9.0 and above critical, 7.0 high, 4.0 medium, below that low.
SECURITY_SEVERITY = {"low": "3.0", "medium": "5.5", "high": "8.0", "critical": "9.5"}
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
SRCROOT = "%SRCROOT%"
FINGERPRINT = "colabGuardFinding/v1"
DEFAULT_FAQ_URL = f"http://localhost:{lab.DEFAULT_PORT}/colab-guard/faq"


@dataclass(frozen=True, slots=True)
class Located:
    """One finding in one file. ``finding.line``/``column`` are in the cell (notebooks) or
    the file; ``file_line``/``file_column`` always in the file itself (for a notebook, where
    that source line sits in its JSON); ``text``: the source line the finding is on."""

    path: str
    cell: int | None
    finding: Finding
    file_line: int = 0
    file_column: int = 0
    text: str = ""


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


@dataclass(frozen=True, slots=True)
class NotebookCell:
    """A code cell: its index among all cells, and its source as the pieces the file holds
    (each decoded string with the offset of its opening quote in the notebook's text)."""

    index: int
    pieces: tuple[tuple[str, int], ...]
    offset: int  # where the cell's object starts in the file

    @property
    def source(self) -> str:
        return "".join(text for text, _ in self.pieces)


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class _JsonReader:
    """Walks JSON text keeping offsets; values it does not look into are decoded whole by
    the standard decoder, so what it accepts is what ``json.loads`` accepts."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def peek(self) -> str:
        self.at = _SPACE.match(self.text, self.at).end()  # type: ignore[union-attr]
        return self.text[self.at : self.at + 1]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise ValueError(f"expected {char!r} at offset {self.at}")
        self.at += 1

    def value(self) -> tuple[Any, int]:
        """The next value and the offset where it starts."""
        start = self.at = _SPACE.match(self.text, self.at).end()  # type: ignore[union-attr]
        found, self.at = _DECODER.raw_decode(self.text, start)
        return found, start

    def keys(self) -> Iterator[str]:
        """Keys of the object that starts here; read each key's value before the next."""
        self.expect("{")
        if self.peek() == "}":
            self.at += 1
            return
        while True:
            key, _ = self.value()
            if not isinstance(key, str):
                raise ValueError(f"expected a key at offset {self.at}")
            self.expect(":")
            yield key
            ending = self.peek()
            self.at += 1
            if ending == "}":
                return
            if ending != ",":
                raise ValueError(f"expected ',' or '}}' at offset {self.at - 1}")

    def items(self) -> Iterator[int]:
        """Indexes of the array that starts here; read each item before the next."""
        self.expect("[")
        if self.peek() == "]":
            self.at += 1
            return
        index = 0
        while True:
            yield index
            index += 1
            ending = self.peek()
            self.at += 1
            if ending == "]":
                return
            if ending != ",":
                raise ValueError(f"expected ',' or ']' at offset {self.at - 1}")

    def end(self) -> None:
        if self.peek():
            raise ValueError(f"extra data at offset {self.at}")


def _read_cell(reader: _JsonReader, index: int) -> NotebookCell | None:
    offset = reader.at
    kind: Any = None
    pieces: tuple[tuple[str, int], ...] = ()
    for key in reader.keys():
        if key in ("source", "input") and reader.peek() == "[":  # input: nbformat 3
            found: list[tuple[str, int]] = []
            for _ in reader.items():
                piece, start = reader.value()
                if not isinstance(piece, str):
                    raise ValueError(f"cell {index}: source holds a {type(piece).__name__}")
                found.append((piece, start))
            pieces = tuple(found)
        elif key in ("source", "input"):
            value, start = reader.value()
            pieces = ((value if isinstance(value, str) else str(value), start),)
        elif key == "cell_type":
            kind, _ = reader.value()
        else:
            reader.value()
    return NotebookCell(index, pieces, offset) if kind == "code" else None


def _read_cells(reader: _JsonReader, first: int) -> tuple[list[NotebookCell], int]:
    """The code cells of a JSON list of cells, and how many cells it holds; ``first``: the
    index of its first cell."""
    cells: list[NotebookCell] = []
    count = 0
    for index in reader.items():
        count += 1
        if reader.peek() == "{":
            cell = _read_cell(reader, first + index)
            if cell is not None:
                cells.append(cell)
        else:
            reader.value()
    return cells, count


def notebook_code_cells(text: str) -> list[NotebookCell]:
    """The code cells of a notebook with where their source lines sit in the file; outputs
    and markdown are never read. Raises ValueError for what is not a notebook."""
    reader = _JsonReader(text)
    if reader.peek() != "{":
        raise ValueError("not a notebook: not a JSON object")
    cells: list[NotebookCell] | None = None
    for key in reader.keys():
        if key == "cells" and reader.peek() == "[":
            cells = _read_cells(reader, 0)[0]
        elif key == "worksheets" and reader.peek() == "[":  # nbformat 3: cells by worksheet
            cells, seen = [], 0
            for _ in reader.items():
                if reader.peek() != "{":
                    reader.value()
                    continue
                for inner in reader.keys():
                    if inner == "cells" and reader.peek() == "[":
                        found, count = _read_cells(reader, seen)
                        cells, seen = cells + found, seen + count
                    else:
                        reader.value()
        else:
            reader.value()
            if key == "cells":
                cells = None  # the last "cells" wins, as in json.loads
    reader.end()
    if cells is None:
        raise ValueError("not a notebook: no 'cells' list")
    return cells


def notebook_cells(text: str) -> list[tuple[int, str]]:
    """(index among all cells, source) of each code cell; outputs are never read."""
    return [(cell.index, cell.source) for cell in notebook_code_cells(text)]


class _Lines:
    """Line and column (1-based) of offsets in a text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.breaks = [m.start() for m in re.finditer("\n", text)]

    def line_start(self, offset: int) -> tuple[int, int]:
        """(line, offset where that line starts) of an offset."""
        line = bisect.bisect_left(self.breaks, offset)
        return line + 1, (self.breaks[line - 1] + 1 if line else 0)


def _raw_length(text: str, start: int, chars: int) -> int:
    """How many characters of JSON string text from ``start`` decode to ``chars``
    characters (escapes are longer in the file than in the string)."""
    at = start
    for _ in range(chars):
        if text[at : at + 1] != "\\":
            at += 1
        elif text[at + 1 : at + 2] != "u":
            at += 2
        elif (
            "\ud800" <= chr(int(text[at + 2 : at + 6], 16)) <= "\udbff"
            and text[at + 6 : at + 8] == "\\u"
            and "\udc00" <= chr(int(text[at + 8 : at + 12], 16)) <= "\udfff"
        ):
            at += 12  # a surrogate pair: one character
        else:
            at += 6
    return at - start


def _cell_position(cell: NotebookCell, lines: _Lines, line: int, column: int) -> tuple[int, int]:
    """Line and column in the notebook file of ``line``:``column`` of the cell's source."""
    if not cell.pieces:
        return lines.line_start(cell.offset)[0], 1
    source = cell.source
    starts = [0, *(m.end() for m in re.finditer("\n", source))]
    first = starts[min(max(line, 1), len(starts)) - 1]
    stop = source.find("\n", first)
    stop = len(source) if stop < 0 else stop
    offset = min(first + max(column, 1) - 1, stop)
    piece_starts = list(itertools.accumulate((len(text) for text, _ in cell.pieces), initial=0))
    which = max(0, min(bisect.bisect_right(piece_starts, offset) - 1, len(cell.pieces) - 1))
    text, quote = cell.pieces[which]
    inside = min(offset - piece_starts[which], len(text))
    at = quote + 1 + _raw_length(lines.text, quote + 1, inside)
    file_line, line_start = lines.line_start(at)
    return file_line, at - line_start + 1


def _line_text(source: str, line: int) -> str:
    found = source.split("\n")
    return found[line - 1].rstrip("\r") if 1 <= line <= len(found) else ""


def scan_path(analyzer: Analyzer, path: Path, budget: float | None = None) -> list[Located]:
    """Findings of one file; ``budget``: seconds of deep analysis per cell (past it the
    cell gets the policy's ``on_timeout``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        session = analyzer.session()
        lines: _Lines | None = None
        out = []
        for cell in notebook_code_cells(text):
            source = cell.source
            for f in session.check(source, budget):
                lines = lines or _Lines(text)
                file_line, file_column = _cell_position(cell, lines, f.line, f.column)
                out.append(
                    Located(
                        str(path), cell.index, f, file_line, file_column, _line_text(source, f.line)
                    )
                )
        return out
    if path.suffix in (".sh", ".bash"):
        text_ = "%%bash\n" + text  # a shell script is checked as a %%bash cell
        found = [_shift(f, -1) for f in analyzer.check(text_, budget=budget)]
    else:
        found = analyzer.check(text, budget=budget)
    return [Located(str(path), None, f, f.line, f.column, _line_text(text, f.line)) for f in found]


def _shift(finding: Finding, lines: int) -> Finding:
    data = finding.to_dict()
    data["line"] = max(1, finding.line + lines)
    return Finding(**data)


def check_file(
    analyzer: Analyzer, path: Path, budget: float | None
) -> tuple[list[Located], list[dict[str, str]]]:
    """Findings and read errors of one file."""
    try:
        return scan_path(analyzer, path, budget), []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [], [{"path": str(path), "message": f"cannot read: {exc}"}]


# -- checking many files ------------------------------------------------------------
_worker: tuple[Analyzer, float | None] | None = None


def _start_worker(policy_path: str | None, budget: float | None) -> None:
    global _worker
    _worker = (Analyzer(load_policy(policy_path)), budget)


def _check_in_worker(path: str) -> tuple[list[Located], list[dict[str, str]]]:
    assert _worker is not None, "the worker was not started"
    analyzer, budget = _worker
    return check_file(analyzer, Path(path), budget)


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Progress:
    """``checked N/M files`` on stderr, rewritten in place; only on a terminal."""

    def __init__(self, total: int, stream: TextIO | None = None, every: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total = total
        self.every = every
        self.shown = False
        self.last = 0.0
        try:
            self.enabled = total > 0 and self.stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or (done < self.total and now - self.last < self.every):
            return
        self.last = now
        self.shown = True
        self.stream.write(f"\rchecked {done}/{self.total} files")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def check_files(
    files: Sequence[Path],
    analyzer: Analyzer,
    policy_path: str | None,
    budget: float | None,
    jobs: int,
    progress: Progress,
) -> tuple[list[Located], list[dict[str, str]]]:
    """Findings and errors of all files, in the order of ``files`` whatever ``jobs`` is.
    ``jobs`` 1 checks in this process; more starts that many worker processes (forked ones
    inherit ``analyzer``; elsewhere each loads the policy at ``policy_path``). A worker
    that dies turns the files it had not finished into errors."""
    results: list[tuple[list[Located], list[dict[str, str]]] | None] = [None] * len(files)
    jobs = min(jobs, len(files))
    if jobs <= 1:
        for index, path in enumerate(files):
            results[index] = check_file(analyzer, path, budget)
            progress.update(index + 1)
    else:
        global _worker
        if "fork" in multiprocessing.get_all_start_methods():
            # forked workers inherit this analyzer: no second load of the policy
            _worker = (analyzer, budget)
            pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))
        else:
            pool = ProcessPoolExecutor(
                jobs, initializer=_start_worker, initargs=(policy_path, budget)
            )
        try:
            pending = {pool.submit(_check_in_worker, str(path)): i for i, path in enumerate(files)}
            for done, future in enumerate(as_completed(pending), 1):
                index = pending[future]
                try:
                    results[index] = future.result()
                except BrokenProcessPool:
                    message = "not checked: a worker process died"
                    results[index] = ([], [{"path": str(files[index]), "message": message}])
                progress.update(done)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            _worker = None
    progress.close()
    found: list[Located] = []
    errors: list[dict[str, str]] = []
    for result in results:
        assert result is not None
        found.extend(result[0])
        errors.extend(result[1])
    return found, errors


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


def artifact_location(path: str, root: Path) -> dict[str, str]:
    """A file relative to ``root`` (``%SRCROOT%``), or its absolute URI when outside."""
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(root)
    except ValueError:
        return {"uri": absolute.as_uri()}
    return {"uri": quote(relative.as_posix()), "uriBaseId": SRCROOT}


def _root_uri(root: Path) -> str:
    uri = root.as_uri()
    return uri if uri.endswith("/") else uri + "/"


def fingerprints(found: list[Located], root: Path) -> list[str]:
    """A stable fingerprint of each finding: its rule, file and the whitespace-normalised
    text of its source line and evidence, hashed, with the number of the occurrence among
    equal ones (so lines moving up or down keep their fingerprint)."""
    seen: dict[str, int] = {}
    out = []
    for x in found:
        key = "\0".join(
            (
                x.finding.rule,
                artifact_location(x.path, root)["uri"],
                " ".join(x.text.split()),
                " ".join(x.finding.evidence.split()),
            )
        )
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        seen[digest] = seen.get(digest, 0) + 1
        out.append(f"{digest}:{seen[digest]}")
    return out


def _fence(text: str) -> str:
    longest = max((len(m.group()) for m in re.finditer("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def sarif_rule(rule_id: str, policy: Policy, example: Finding, faq_url: str) -> dict[str, Any]:
    """The reportingDescriptor of a rule: from the policy, or for the analyzer's own rules
    (``analysis.*``) from a finding of it."""
    rule = policy.rules_by_id.get(rule_id)
    category_id = rule.category if rule else example.category
    category = policy.categories.get(category_id)
    message = rule.message if rule else example.message
    action = rule.action if rule else example.action
    severity = rule.severity if rule else example.severity
    help_uri = f"{faq_url}#{quote(category_id)}" if category else faq_url
    title = category.title if category else "Checking the cell"
    about = (
        category.description
        if category
        else "The analyzer could not check this code fully; the policy decides what that means."
    )
    matches = f"Matches when the cell {describe(rule.match)}." if rule else ""
    upstream = category.metadata.get("faq") if category else None
    text = "\n\n".join(
        part
        for part in (
            f"{title}: {message}",
            about,
            matches,
            f"Action: {action}, severity: {severity}.",
            f"Prohibited actions: {help_uri}",
        )
        if part
    )
    markdown = "\n\n".join(
        part
        for part in (
            f"**{title}**: {message}",
            about,
            f"Matches when the cell:\n\n{_fence(describe(rule.match))}" if rule else "",
            f"Action: `{action}`, severity: `{severity}`.",
            f"See [the prohibited actions]({help_uri})"
            + (f" and [the upstream FAQ]({upstream})." if isinstance(upstream, str) else "."),
        )
        if part
    )
    return {
        "id": rule_id,
        "name": rule_id,
        "shortDescription": {"text": message},
        "fullDescription": {"text": f"{title}: {message} {about}"},
        "helpUri": help_uri,
        "help": {"text": text, "markdown": markdown},
        "defaultConfiguration": {"level": LEVELS.get(action, "warning")},
        "properties": {
            "category": category_id,
            "security-severity": SECURITY_SEVERITY.get(severity, "5.5"),
            "tags": ["security", "acceptable-use", category_id],
        },
    }


def as_sarif(
    found: list[Located],
    errors: list[dict[str, str]],
    policy: Policy,
    root: Path | None = None,
    faq_url: str = DEFAULT_FAQ_URL,
) -> dict[str, Any]:
    """A SARIF 2.1.0 log that GitHub code scanning accepts: notebook findings are placed on
    the line of the ``.ipynb`` file that holds the source line (the cell and the line in
    the cell are in the result's properties), URIs are relative to ``root`` (``%SRCROOT%``,
    default: the current folder)."""
    root = Path(os.path.abspath(root if root is not None else os.curdir))
    faq_url = faq_url.split("#", 1)[0]
    examples: dict[str, Finding] = {}
    for x in found:
        examples.setdefault(x.finding.rule, x.finding)
    rule_ids = sorted(examples)
    rule_index = {rid: i for i, rid in enumerate(rule_ids)}
    results = []
    for x, fingerprint in zip(found, fingerprints(found, root), strict=True):
        f = x.finding
        where = f" (cell {x.cell}, line {f.line})" if x.cell is not None else ""
        properties: dict[str, Any] = {
            "category": f.category,
            "severity": f.severity,
            "action": f.action,
        }
        if x.cell is not None:
            properties.update(cell=x.cell, cellLine=f.line, cellColumn=f.column)
        results.append(
            {
                "ruleId": f.rule,
                "ruleIndex": rule_index[f.rule],
                "level": LEVELS[f.action],
                "message": {"text": f.message + where},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": artifact_location(x.path, root),
                            "region": {
                                "startLine": max(1, x.file_line or f.line),
                                "startColumn": max(1, x.file_column or f.column),
                            },
                        }
                    }
                ],
                "partialFingerprints": {FINGERPRINT: fingerprint},
                "properties": properties,
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "colab-guard",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [
                            sarif_rule(rid, policy, examples[rid], faq_url) for rid in rule_ids
                        ],
                    }
                },
                "originalUriBaseIds": {SRCROOT: {"uri": _root_uri(root)}},
                "columnKind": "unicodeCodePoints",
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": not errors,
                        "toolExecutionNotifications": [
                            {
                                "level": "error",
                                "message": {"text": f"{e['path']}: {e['message']}"},
                                "locations": [
                                    {
                                        "physicalLocation": {
                                            "artifactLocation": artifact_location(e["path"], root)
                                        }
                                    }
                                ],
                            }
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
    files = list(iter_files(args.paths))
    found, errors = check_files(
        files, analyzer, args.policy, args.budget, args.jobs or default_jobs(), Progress(len(files))
    )
    if args.format == "json":
        report = json.dumps(as_json(found, errors))
    elif args.format == "sarif":
        sarif = as_sarif(found, errors, policy, Path(args.root), args.faq_url)
        report = json.dumps(sarif, indent=2)
    else:
        report = as_text(found, errors)
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report + "\n", encoding="utf-8")
    else:
        print(report)
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
        if leaf.guessed is not None:
            conds.append(f"an argument /{leaf.guessed.pattern}/ is each item of a for loop")
        if leaf.looped == LOOP_REPEATED:
            conds.append("it runs in a loop repeated many or an unknown number of times")
        elif leaf.looped:
            conds.append("it runs in an endless loop")
        called = f"a function named like /{pattern}/" if leaf.pattern else names
        return f"calls {called}" + (f" where {' and '.join(conds)}" if conds else "")
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


def _jobs(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (all cores) or more")
    return value


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
    check.add_argument(
        "--jobs",
        "-j",
        type=_jobs,
        default=0,
        help="processes checking files at once (default and 0: all cores; 1: in this process)",
    )
    check.add_argument("--output", "-o", help="write the report to this file, not stdout")
    check.add_argument(
        "--root",
        default=os.curdir,
        help="folder that SARIF file URIs are relative to (%%SRCROOT%%; default: the current "
        "folder, which for GitHub code scanning is the repository's checkout)",
    )
    check.add_argument(
        "--faq-url",
        default=DEFAULT_FAQ_URL,
        help="the FAQ page SARIF rules link to, each at its category's anchor "
        "(default: %(default)s, the page of `colab-guard lab`)",
    )
    check.add_argument("paths", nargs="+")
    check.set_defaults(func=cmd_check)
    policy = sub.add_parser(
        "policy", help="validate, test, explain or publish a policy; list published versions"
    )
    psub = policy.add_subparsers(dest="policy_command", required=True)
    for name, func, text in (
        ("validate", cmd_validate, "report every problem of a policy"),
        ("test", cmd_test, "run every rule's example cells"),
        ("explain", cmd_explain, "describe the policy in words"),
    ):
        p = psub.add_parser(name, help=text)
        p.add_argument("file", nargs="?", help="policy YAML (default: the shipped policy)")
        p.set_defaults(func=func)
    publish.add_commands(psub)
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
