"""Score the guard on the evaluation corpus of real public files (issue 9).

The files themselves are not in the repository: ``manifest.json`` names each one
(repository, path, commit, sha256, label) and this script reads it from a local cache
laid out as ``<cache>/<owner>+<name>/<commit>/<path>``. A file is an *alarm* when any of
its cells gets a ``warn`` or ``block`` finding (a timeout included): recall is the share
of prohibited files with an alarm, false alarms the share of benign files with one.

    python benchmarks/corpus/score.py                   # both splits, default policy
    python benchmarks/corpus/score.py --split dev --misses   # what rule work may look at

The held-out split is frozen: never print its misses while working on rules.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.cli import notebook_cells
from jupyter_colab_guard.policy import load_policy

HERE = Path(__file__).parent
DEFAULT_CACHE = os.environ.get(
    "COLAB_GUARD_CORPUS_CACHE", os.path.expanduser("~/.cache/colab-guard/corpus")
)
ALARM = ("warn", "block")
SLOW_CELL = 0.050  # seconds: no cell of the corpus may take longer to check
SHELL_SHEBANG = re.compile(r"#!\s*/(?:usr/)?bin/(?:env\s+)?(?:ba|z|da)?sh\b")
# frozen splits, their misses never listed: heldout (40% of the first corpus) and fresh (a
# set collected blind after the rule work on dev2 began, scored only once it was done)
FROZEN = ("heldout", "fresh")
# manifest.json: the first corpus (dev + frozen heldout); manifest_dev2.json: a second
# development set collected blind later, for rule work; manifest_fresh.json: frozen;
# manifest_dev3.json, _dev4.json and _dev5.json: a third, fourth and fifth development set
DEFAULT_MANIFESTS = tuple(
    HERE / f"manifest{s}.json" for s in ("", "_dev2", "_fresh", "_dev3", "_dev4", "_dev5")
)


@dataclass
class Result:
    entry: dict[str, Any]
    alarm: bool = False
    categories: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    cell_times: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def right_category(self) -> bool:
        e = self.entry
        return bool(self.categories & {e["category"], *e.get("also", [])})


def cached_path(cache: str, entry: dict[str, Any]) -> Path:
    return Path(cache, entry["repo"].replace("/", "+"), entry["commit"], entry["path"])


def read_entries(paths: list[str]) -> list[dict[str, Any]]:
    """The entries of every manifest; a file named twice (repository, path, commit) is an
    error, so that no file can sit in two splits."""
    entries: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str], str] = {}
    for path in paths:
        for entry in json.loads(Path(path).read_text(encoding="utf-8"))["entries"]:
            key = (entry["repo"], entry["path"], entry["commit"])
            if key in seen:
                raise SystemExit(f"{path}: {'/'.join(key[:2])} is also in {seen[key]}")
            seen[key] = path
            entries.append(entry)
    return entries


def cells_of(path: Path, text: str) -> list[str]:
    """The cells a guard would see: a notebook's code cells, a script as one cell (shell
    scripts as a ``%%bash`` cell)."""
    if path.suffix == ".ipynb" or (text.lstrip().startswith("{") and '"cells"' in text[:5000]):
        try:
            return [source for _, source in notebook_cells(text)]
        except ValueError:
            pass
    if path.suffix in (".sh", ".bash", ".zsh") or SHELL_SHEBANG.match(text):
        return ["%%bash\n" + text]
    return [text]


def score_file(
    analyzer: Analyzer,
    cache: str,
    entry: dict[str, Any],
    budget: float,
    clock: Callable[[], float] = time.perf_counter,
) -> Result:
    result = Result(entry)
    path = cached_path(cache, entry)
    try:
        data = path.read_bytes()
    except OSError as err:
        result.error = f"not in the cache ({err.strerror})"
        return result
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        result.error = "cached content differs from the manifest's sha256"
        return result
    session = analyzer.session()
    for source in cells_of(path, data.decode("utf-8", "replace")):
        start = clock()
        findings = session.check(source, budget)
        result.cell_times.append(clock() - start)
        for f in findings:
            if f.action in ALARM:
                result.alarm = True
                result.categories.add(f.category)
                result.rules.add(f.rule)
    return result


def summarize(results: list[Result]) -> dict[str, Any]:
    scored = [r for r in results if not r.error and not r.entry["uncertain"]]
    out: dict[str, Any] = {"files": len(results), "errors": sum(bool(r.error) for r in results)}
    by_cat: dict[str, list[Result]] = defaultdict(list)
    for r in scored:
        if r.entry["label"] == "prohibited":
            by_cat[r.entry["category"]].append(r)
    cats = {}
    for cat, rs in sorted(by_cat.items()):
        cats[cat] = {
            "files": len(rs),
            "caught": sum(r.alarm for r in rs),
            "recall": round(sum(r.alarm for r in rs) / len(rs), 3),
            "right_category": sum(r.right_category for r in rs),
        }
    prohibited = [r for rs in by_cat.values() for r in rs]
    benign = [r for r in scored if r.entry["label"] == "benign"]
    hard = [r for r in benign if r.entry["hard_negative"]]
    out["recall"] = round(sum(r.alarm for r in prohibited) / max(len(prohibited), 1), 3)
    out["prohibited"] = len(prohibited)
    out["categories"] = cats
    out["benign"] = len(benign)
    out["false_alarms"] = sum(r.alarm for r in benign)
    out["false_alarm_rate"] = round(out["false_alarms"] / max(len(benign), 1), 4)
    out["hard_negatives"] = len(hard)
    out["hard_negative_false_alarms"] = sum(r.alarm for r in hard)
    unsure = [r for r in results if not r.error and r.entry["uncertain"]]
    out["uncertain"] = {"files": len(unsure), "alarms": sum(r.alarm for r in unsure)}
    times = sorted(t for r in results for t in r.cell_times)
    if times:
        out["cells"] = len(times)
        out["cell_ms"] = {
            "median": round(statistics.median(times) * 1000, 2),
            "p99": round(times[int(0.99 * (len(times) - 1))] * 1000, 2),
            "max": round(times[-1] * 1000, 2),
            "over_50ms": sum(t > SLOW_CELL for t in times),
        }
    return out


def render(name: str, s: dict[str, Any]) -> str:
    lines = [f"== {name}: {s['prohibited']} prohibited, {s['benign']} benign files =="]
    lines.append(f"{'category':28} {'files':>5} {'caught':>6} {'recall':>7} {'right cat':>9}")
    for cat, c in s["categories"].items():
        lines.append(
            f"{cat:28} {c['files']:5} {c['caught']:6} {c['recall']:7.3f} {c['right_category']:9}"
        )
    lines.append(f"{'overall recall':28} {s['recall']:.3f}")
    lines.append(
        f"false alarms: {s['false_alarms']}/{s['benign']} ({100 * s['false_alarm_rate']:.2f}%), "
        f"hard negatives {s['hard_negative_false_alarms']}/{s['hard_negatives']}"
    )
    lines.append(f"uncertain (not scored): {s['uncertain']['alarms']}/{s['uncertain']['files']}")
    if "cell_ms" in s:
        t = s["cell_ms"]
        lines.append(
            f"cells {s['cells']}: median {t['median']} ms, p99 {t['p99']} ms, max {t['max']} ms, "
            f"over 50 ms: {t['over_50ms']}"
        )
    if s["errors"]:
        lines.append(f"files missing or changed in the cache: {s['errors']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--manifest",
        action="append",
        help="manifest file (repeatable; default: manifest.json, _dev2 and _fresh)",
    )
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="folder of the cached files")
    ap.add_argument("--policy", default=None, help="policy file or folder (default: shipped)")
    ap.add_argument("--split", default="all", help="all, or one split: dev, dev2, heldout")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of analysis per cell")
    ap.add_argument(
        "--misses", action="store_true", help="list misses and false alarms (not of a frozen split)"
    )
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="time cells with this thread's CPU time (steadier on a shared machine)",
    )
    args = ap.parse_args(argv)

    entries_all = read_entries(args.manifest or [str(p) for p in DEFAULT_MANIFESTS if p.exists()])
    analyzer = Analyzer(load_policy(args.policy))
    present = sorted({e["split"] for e in entries_all}, key=lambda s: (s in FROZEN, s))
    if args.split != "all" and args.split not in present:
        ap.error(f"no split {args.split!r} in the manifests (there are: {', '.join(present)})")
    splits = present if args.split == "all" else [args.split]
    report: dict[str, Any] = {}
    for split in splits:
        entries = [e for e in entries_all if e["split"] == split]
        clock = time.thread_time if args.cpu else time.perf_counter
        results = [score_file(analyzer, args.cache, e, args.budget, clock) for e in entries]
        report[split] = summarize(results)
        print(render(split, report[split]))
        if args.misses and split not in FROZEN:
            for r in results:
                wrong = r.alarm != (r.entry["label"] == "prohibited")
                if (wrong or r.error) and not r.entry["uncertain"]:
                    e = r.entry
                    what = r.error or ("missed" if e["label"] == "prohibited" else "false alarm")
                    print(f"  {what}: {e['category'] or 'benign'} {e['repo']}/{e['path']}", end="")
                    print(f" ({', '.join(sorted(r.rules))})" if r.rules else "")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    errors = sum(s["errors"] for s in report.values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
