"""Per-cell cost of the check against IPython's own transform_cell + compile of the same cell.

Run: python benchmarks/analyzer_bench.py [--repeat N] [--json] [--cpu]
Reports the aggregate ratio (sum over cells of the best of N runs of the check, divided by the
same sum for IPython's transform_cell + compile) uncached, cached, and with 10x the rules.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import json
import logging
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from IPython.core.inputtransformer2 import TransformerManager

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.analysis.pyscan import Memory
from jupyter_colab_guard.policy import Policy, load_policy

NOTEBOOK_CELLS = [
    "import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\n%matplotlib inline",
    "df = pd.read_csv('data/train.csv')\ndf.head()",
    "!pip install -q transformers datasets accelerate",
    "%%bash\nmkdir -p data\nwget -q https://example.org/cifar-10-python.tar.gz -O data/c.tgz\n"
    "tar xzf data/c.tgz -C data\nls data",
    "print(f'rows: {len(df)}, columns: {df.shape[1]}')\ndf.describe()",
    "fig, ax = plt.subplots(1, 2, figsize=(12, 4))\nax[0].hist(df['age'], bins=30)\n"
    "ax[1].scatter(df['age'], df['income'], s=2)\nplt.show()",
    "import torch\nfrom torch import nn\nfrom torch.utils.data import DataLoader\n"
    "device = 'cuda' if torch.cuda.is_available() else 'cpu'\n!nvidia-smi",
    """class Net(nn.Module):
    def __init__(self, hidden=256):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.body(x.flatten(1))

model = Net().to(device)
opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
loss_fn = nn.CrossEntropyLoss()""",
    """for epoch in range(10):
    model.train()
    total = 0.0
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item()
    print(f"epoch {epoch}: loss {total / len(loader):.4f}")""",
    "from sklearn.model_selection import train_test_split\n"
    "X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)",
    "import subprocess\nprint(subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv'],"
    " capture_output=True, text=True).stdout)",
    "from google.colab import drive\ndrive.mount('/content/drive')",
    "%load_ext tensorboard\n%tensorboard --logdir runs",
    "import gradio as gr\ndemo = gr.Interface(fn=predict, inputs='image', outputs='label')\n"
    "demo.launch(share=True)",
    "results = {name: evaluate(m, X_test, y_test) for name, m in models.items()}\n"
    "pd.DataFrame(results).T.sort_values('f1', ascending=False)",
    # prohibited cells: a realistic minority
    "!wget -q https://github.com/xmrig/xmrig/releases/download/v6.21.0/xmrig-6.21.0-linux-static-x64.tar.gz\n"
    "!tar xf xmrig-6.21.0-linux-static-x64.tar.gz\n"
    "!nohup ./xmrig-6.21.0/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u 4xyz"
    " > /dev/null 2>&1 &",
    "import os\nos.system('x' + 'mrig' + ' --donate-level 1')",
]


def _chunks_of_real_code() -> list[str]:
    """Top-level statements of real stdlib modules, cut to at most 5..2000 lines."""
    import argparse as a
    import logging as lg
    import tarfile as tf
    import typing as ty

    cells: list[str] = []
    for module, sizes in ((ty, (5, 30)), (a, (60, 200)), (lg, (500,)), (tf, (2000,))):
        source = Path(module.__file__ or "").read_text()
        tree = ast.parse(source)
        lines = source.splitlines()
        for size in sizes:
            end = 0
            for node in tree.body:  # whole statements, as many as fit in ``size`` lines
                if end and (node.end_lineno or 0) > size:
                    break
                end = node.end_lineno or end
            cells.append("\n".join(lines[:end]))
    return cells


CELLS = NOTEBOOK_CELLS + _chunks_of_real_code()


CLOCK: Callable[[], float] = time.perf_counter


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs: the figure least disturbed by other load (as timeit)."""
    samples = []
    for _ in range(repeat):
        start = CLOCK()
        fn()
        samples.append(CLOCK() - start)
    return min(samples)


def baseline(cell: str) -> None:
    code = TransformerManager().transform_cell(cell)
    try:
        compile(code, "<cell>", "exec")
    except SyntaxError:
        pass


def scaled(policy: Policy, factor: int) -> Policy:
    """The policy with every rule repeated ``factor`` times under new names and keywords."""
    rules = list(policy.rules)
    leaves = list(policy.leaves)
    for copy_index in range(1, factor):
        for rule in policy.rules:
            match = _clone(rule.match, copy_index, leaves)
            rules.append(dataclasses.replace(rule, id=f"{rule.id}-x{copy_index}", match=match))
    scaled_policy = copy.copy(policy)
    scaled_policy.rules = rules
    scaled_policy.leaves = leaves
    scaled_policy.rules_by_id = {r.id: r for r in rules}
    return scaled_policy


def _tagged(text: str, tag: str) -> str:
    """A distinct name of the same shape: the tag goes after the longest alphanumeric run."""
    runs = list(re.finditer(r"[A-Za-z0-9]+", text))
    if not runs:
        return text + tag
    end = max(runs, key=lambda m: len(m.group(0))).end()
    return text[:end] + tag + text[end:]


def _clone(matcher, index: int, leaves: list):  # type: ignore[no-untyped-def]
    from jupyter_colab_guard.policy.model import Combinator, Leaf

    if isinstance(matcher, Combinator):
        return Combinator(matcher.op, tuple(_clone(c, index, leaves) for c in matcher.children))
    assert isinstance(matcher, Leaf)
    leaf = copy.copy(matcher)
    tag = "".join(chr(ord("a") + int(d)) for d in str(index)) + "q"  # 1 -> "bq"
    leaf.names = tuple(_tagged(n, tag) if n != "*" else n for n in matcher.names)
    leaf.keywords = tuple(_tagged(k, tag) for k in matcher.keywords)
    leaf.index = len(leaves)
    leaves.append(leaf)
    return leaf


def run(repeat: int) -> dict[str, object]:
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    policy = load_policy(None)
    analyzers = {"default": Analyzer(policy), "10x rules": Analyzer(scaled(policy, 10))}
    rows = []
    totals = {"baseline": 0.0, "uncached": 0.0, "cached": 0.0, "uncached 10x": 0.0}
    for cell in CELLS:
        base = best_time(lambda c=cell: baseline(c), repeat)
        row = {"lines": cell.count("\n") + 1, "baseline_ms": base * 1e3}
        for label, analyzer in analyzers.items():
            uncached = best_time(lambda a=analyzer, c=cell: a.analyse(c, Memory(), None), repeat)
            key = "uncached" if label == "default" else "uncached 10x"
            row[f"{key}_ratio"] = uncached / base
            totals[key] += uncached
        analyzers["default"].check(cell)
        cached = best_time(lambda c=cell: analyzers["default"].check(c), repeat)
        row["cached_ratio"] = cached / base
        totals["cached"] += cached
        totals["baseline"] += base
        rows.append(row)
    aggregate = {k: totals[k] / totals["baseline"] for k in ("uncached", "cached", "uncached 10x")}
    return {
        "cells": rows,
        "aggregate": aggregate,
        "rules": len(policy.rules),
        "rules_10x": len(analyzers["10x rules"].policy.rules),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time with this process's CPU time instead of the wall clock (steadier on a "
        "machine other work shares)",
    )
    args = parser.parse_args()
    if args.cpu:
        global CLOCK
        CLOCK = time.process_time
    result = run(args.repeat)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'lines':>6} {'baseline ms':>12} {'uncached':>9} {'cached':>7} {'10x rules':>9}")
    for row in result["cells"]:  # type: ignore[union-attr]
        print(
            f"{row['lines']:>6} {row['baseline_ms']:>12.3f} {row['uncached_ratio']:>9.2f} "
            f"{row['cached_ratio']:>7.3f} {row['uncached 10x_ratio']:>9.2f}"
        )
    agg = result["aggregate"]
    print(
        f"\naggregate ratio (sum of check times / sum of transform+compile times, best of N) over "
        f"{len(CELLS)} cells, {result['rules']} rules ({result['rules_10x']} for 10x):"
    )
    print(
        f"  uncached {agg['uncached']:.3f}   cached {agg['cached']:.4f}   "  # type: ignore[index]
        f"uncached with 10x rules {agg['uncached 10x']:.3f}"
    )  # type: ignore[index]


if __name__ == "__main__":
    main()
