"""Every cell of the case files and of the default policy's rule examples: the texts the
shortcut tests compare against the plain way."""

from __future__ import annotations

from pathlib import Path

import yaml

from jupyter_colab_guard.policy import load_policy

CASES = Path(__file__).parents[1] / "cases"
POLICY = load_policy(None)
CELLS = [
    cell
    for name in ("positive.yaml", "negatives.yaml")
    for case in yaml.safe_load((CASES / name).read_text())
    for cell in case["cells"]
] + [cell for r in POLICY.rules for cell in (*r.examples_match, *r.examples_no_match)]
