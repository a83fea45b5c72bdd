"""Kernel-side overhead of the guard: median time per execution, with and without it.

Runs realistic cells in two real kernels (jupyter_client), one started with
``--ext=jupyter_colab_guard`` and the shipped default policy, one without, and prints
a table. Every repetition changes a comment so each run is a new cell to the analyzer
(no cache hits), as when a user edits and re-runs. A second table times audited
operations inside the kernel to show the runtime hook's cost.

    python benchmarks/kernel_overhead.py [--reps 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "kernel"))

from kernel_client import execute, running_kernel  # noqa: E402

DATA_PREP = """
import json, re, collections, dataclasses, statistics

@dataclasses.dataclass
class Row:
    name: str
    score: float
    tags: list

def parse(line):
    name, score, *tags = re.split(r"[,;]", line)
    return Row(name.strip(), float(score), [t.strip() for t in tags])

raw = [f"user{i}, {i * 0.37 % 10:.2f}, a, b{i % 7}" for i in range(2000)]
rows = [parse(x) for x in raw]
by_tag = collections.Counter(t for r in rows for t in r.tags)
summary = {
    "n": len(rows),
    "mean": statistics.mean(r.score for r in rows),
    "top": by_tag.most_common(3),
}
print(json.dumps(summary)[:80])
"""

LONG_CELL = "\n".join(
    f"v{i} = [{i} * k for k in range(20)]\nif sum(v{i}) % 7 == 3:\n    v{i}.append({i})"
    for i in range(70)
)

CELLS: dict[str, str] = {
    "tiny (x = 1)": "x = 1",
    "print + expression": "print('hello'); 6 * 7",
    "loop (sum of squares)": "sum(i * i for i in range(200_000))",
    "data prep (25 lines)": DATA_PREP,
    "long cell (210 lines)": LONG_CELL,
    "shell (!echo)": "!echo hi",
    "subprocess.run": "import subprocess\nsubprocess.run(['true'])",
    "pip magic (%pip --version)": "%pip --version",
}

RUNTIME_PROBE = """
import time, os, socket
def bench(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6
code = compile('1 + 1', 'x', 'eval')
print(bench(lambda: eval(code), 200_000))
print(bench(lambda: open(os.devnull).close(), 20_000))
print(bench(lambda: socket.getaddrinfo('127.0.0.1', 80), 5_000))
print(bench(lambda: sum(range(100)), 200_000))
"""
PROBES = ["exec of compiled code", "open() + close", "getaddrinfo", "plain Python (no event)"]


def time_cells(kernels: dict[str, object], reps: int) -> dict[str, dict[str, float]]:
    """Median ms per cell for each kernel; the kernels take turns to share any drift."""
    out: dict[str, dict[str, float]] = {k: {} for k in kernels}
    for name, code in CELLS.items():
        samples: dict[str, list[float]] = {k: [] for k in kernels}
        for i in range(reps + 3):
            for label, kc in kernels.items():
                start = time.perf_counter()
                r = execute(kc, f"{code}\n# rep {i}")
                took = time.perf_counter() - start
                assert r.status == "ok", (name, r.reply)
                if i >= 3:  # the first runs warm up imports and lazy magics
                    samples[label].append(took)
        for label in kernels:
            out[label][name] = statistics.median(samples[label]) * 1000
    return out


def probe(kc) -> list[float]:
    r = execute(kc, RUNTIME_PROBE)
    return [float(x) for x in r.stream().split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with (
            running_kernel(work, guard=False) as plain_kc,
            running_kernel(work, policy=None) as guarded_kc,
        ):
            times = time_cells({"plain": plain_kc, "guarded": guarded_kc}, args.reps)
            plain, guarded = times["plain"], times["guarded"]
            plain_probe, guarded_probe = probe(plain_kc), probe(guarded_kc)
    print(f"Median wall time per execution, {args.reps} runs each (ms, client round trip)\n")
    print(f"| cell | without guard | with guard | overhead |\n|{'---|' * 4}")
    for name in CELLS:
        a, b = plain[name], guarded[name]
        print(f"| {name} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    print("\nAudited operations inside the kernel (microseconds per call)\n")
    print(f"| operation | without guard | with guard | overhead |\n|{'---|' * 4}")
    for name, a, b in zip(PROBES, plain_probe, guarded_probe, strict=True):
        print(f"| {name} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")


if __name__ == "__main__":
    main()
