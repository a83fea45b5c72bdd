"""Check time against cell size for the most expensive shapes of cell we know.

    python benchmarks/hostile_bench.py [--sizes 10000,100000,1000000] [--budget SECONDS]

Each shape is grown to about each size (characters) and checked once with a fresh
analyzer (no cache) under the default policy; the table gives seconds and microseconds
per character, so a linear bound shows as a flat column.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.policy import load_policy

COMMAND = "!./xmrig -o stratum+tcp://pool.example.com:3333\n"


def _repeat(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit))


SHAPES: dict[str, Callable[[int], str]] = {
    "shell lines (!cmd)": lambda n: _repeat("!echo hi\n", n) + COMMAND,
    "statements (x = 1)": lambda n: _repeat("x = 1\n", n) + COMMAND,
    "marked statements": lambda n: _repeat("y = 'a' + 'b'\n", n) + COMMAND,
    "keyword statements": lambda n: _repeat("os.system('echo')\n", n) + COMMAND,
    "+ chain": lambda n: "s = " + _repeat("'a' + ", n) + "'a'\n" + COMMAND,
    "chr list": lambda n: "s = ''.join([" + _repeat("chr(97),", n) + "])\n" + COMMAND,
    "string literal": lambda n: "s = '" + "a" * n + "'\n" + COMMAND,
    "deep brackets": lambda n: "x = " + "[" * (n // 2) + "]" * (n // 2) + "\n" + COMMAND,
    "dotted a.a.a": lambda n: _repeat("a.", n) + "\n" + COMMAND,
    "form feeds": lambda n: _repeat("x = 1\x0c\n", n) + COMMAND,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--budget", type=float, default=None, help="analysis budget (s)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    policy = load_policy(None)
    print(f"| shape | {' | '.join(f'{s:,} chars' for s in sizes)} | µs/char (largest) |")
    print(f"|---|{'---|' * len(sizes)}---|")
    for name, build in SHAPES.items():
        cells = []
        per_char = 0.0
        for size in sizes:
            cell = build(size)
            analyzer = Analyzer(policy)
            start = time.perf_counter()
            findings = analyzer.check(cell, budget=args.budget)
            took = time.perf_counter() - start
            caught = any(f.category == "crypto_mining" for f in findings)
            cells.append(f"{took:.3f} s{'' if caught else ' (missed)'}")
            per_char = took / len(cell) * 1e6
        print(f"| {name} | {' | '.join(cells)} | {per_char:.1f} |")


if __name__ == "__main__":
    main()
