"""The evaluation corpus (benchmarks/corpus/): the manifest is well formed and frozen as
described, and score.py scores files from a cache the way the guard checks them."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "corpus"))

import score  # noqa: E402

from jupyter_colab_guard.policy import load_policy  # noqa: E402

MANIFEST = json.loads((ROOT / "benchmarks" / "corpus" / "manifest.json").read_text())


def test_the_manifest_covers_every_category_with_a_frozen_split() -> None:
    entries = MANIFEST["entries"]
    assert len({e["sha256"] for e in entries}) == len(entries)  # no file twice
    assert len({e["id"] for e in entries}) == len(entries)
    categories = set(load_policy(None).categories)
    prohibited = [e for e in entries if e["label"] == "prohibited"]
    assert {e["category"] for e in prohibited} == categories
    assert len(prohibited) >= 150 and len(entries) - len(prohibited) >= 400
    for e in entries:
        assert e["split"] in ("dev", "heldout")
        assert 1 <= len(e["evidence"]) <= 3 and len(e["commit"]) == 40, e["id"]
    held = Counter(e["category"] for e in prohibited if e["split"] == "heldout")
    assert all(held[c] >= 5 for c in categories), held


def write_corpus(tmp: Path, files: dict[str, tuple[str, str | None, str]]) -> Path:
    """A manifest of ``name: (label, category, content)`` and its cache."""
    entries = []
    for name, (label, category, content) in files.items():
        entry = {
            "id": name, "repo": "someone/repo", "path": name, "commit": "0" * 40,
            "sha256": hashlib.sha256(content.encode()).hexdigest(), "label": label,
            "category": category, "also": [], "hard_negative": False, "uncertain": False,
            "split": "dev",
        }  # fmt: skip
        path = score.cached_path(str(tmp / "cache"), entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        entries.append(entry)
    manifest = tmp / "manifest.json"
    manifest.write_text(json.dumps({"entries": entries}))
    return manifest


NOTEBOOK = json.dumps(
    {"cells": [
        {"cell_type": "markdown", "source": ["!./xmrig -o stratum+tcp://p:3333 (prose)"]},
        {"cell_type": "code", "source": ["import os\n", "print(os.getcwd())\n"]},
    ]}
)  # fmt: skip


def test_score_counts_alarms_per_category_and_on_benign_files(tmp_path: Path) -> None:
    manifest = write_corpus(
        tmp_path,
        {
            "miner.sh": ("prohibited", "crypto_mining", "./xmrig -o stratum+tcp://p:3333 -u w\n"),
            "quiet.py": ("prohibited", "dos_attacks", "print('hello')\n"),
            "plain.ipynb": ("benign", None, NOTEBOOK),
        },
    )
    out = tmp_path / "figures.json"
    code = score.main(
        ["--manifest", str(manifest), "--cache", str(tmp_path / "cache"), "--split", "dev",
         "--json", str(out)]
    )  # fmt: skip
    dev = json.loads(out.read_text())["dev"]
    assert code == 0
    assert dev["categories"]["crypto_mining"] == {
        "files": 1, "caught": 1, "recall": 1.0, "right_category": 1
    }  # fmt: skip
    assert dev["categories"]["dos_attacks"]["caught"] == 0
    assert dev["recall"] == 0.5
    assert dev["false_alarms"] == 0  # markdown is never read
    assert dev["cells"] == 3


def test_a_changed_cache_file_is_an_error_not_a_score(tmp_path: Path) -> None:
    manifest = write_corpus(tmp_path, {"a.py": ("benign", None, "x = 1\n")})
    (tmp_path / "cache" / "someone+repo" / ("0" * 40) / "a.py").write_text("x = 2\n")
    code = score.main(
        ["--manifest", str(manifest), "--cache", str(tmp_path / "cache"), "--split", "dev"]
    )
    assert code == 1
