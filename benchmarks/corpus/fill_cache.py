"""Fill the corpus cache from local git snapshots of the manifest's repositories.

Each repository must already be on this machine as a git directory (the search tool's
``fetch`` puts it at ``<mirrors>/<owner>+<name>/repo`` or ``.../repo/.git``). Every file
is read at the manifest's commit with ``git show`` and kept only when its sha256 matches.

    python benchmarks/corpus/fill_cache.py --mirrors /work/.mirror --cache /work/corpus-cache
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).with_name("manifest.json")


def git_dir(mirrors: Path, repo: str) -> Path | None:
    base = mirrors / repo.replace("/", "+") / "repo"
    for candidate in (base / ".git", base):
        if (candidate / "HEAD").is_file():
            return candidate
    return None


def read_at(git: Path, commit: str, path: str) -> bytes | None:
    done = subprocess.run(
        ["git", f"--git-dir={git}", "show", f"{commit}:{path}"],
        capture_output=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


def fill(entries: list[dict[str, Any]], mirrors: Path, cache: Path) -> dict[str, list[str]]:
    outcome: dict[str, list[str]] = {"ok": [], "no_repo": [], "no_file": [], "changed": []}
    for entry in entries:
        target = cache / entry["repo"].replace("/", "+") / entry["commit"] / entry["path"]
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == entry["sha256"]:
            outcome["ok"].append(entry["id"])
            continue
        git = git_dir(mirrors, entry["repo"])
        if git is None:
            outcome["no_repo"].append(entry["id"])
            continue
        data = read_at(git, entry["commit"], entry["path"])
        if data is None:
            outcome["no_file"].append(entry["id"])
            continue
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            outcome["changed"].append(entry["id"])
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        outcome["ok"].append(entry["id"])
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)
    entries = json.loads(args.manifest.read_text())["entries"]
    outcome = fill(entries, args.mirrors, args.cache)
    for kind, ids in outcome.items():
        print(f"{kind}: {len(ids)}")
    for kind in ("no_repo", "no_file", "changed"):
        for entry in entries:
            if entry["id"] in outcome[kind]:
                print(f"  {kind}: {entry['repo']} {entry['path']}", file=sys.stderr)
    return 0 if len(outcome["ok"]) == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
