"""The process watcher's cost and speed, with real processes.

    python benchmarks/watcher_bench.py [--interval 1.0] [--trials 30]

1. CPU: the watcher polling every ``interval`` seconds over a watched tree of 50 and
   500 processes (sleeping children of a stand-in kernel), as % of one core.
2. Exec to kill: stand-in miners (a script named xmrig, started with a pool URL) started
   at random moments below the stand-in kernel; seconds from start to death, p50/p99.
The watcher adds nothing to the check of a cell: it runs in a thread of its own.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.policy import load_policy
from jupyter_colab_guard.watcher import Owner, ProcessJudge, ProcessWatcher

KERNEL = (
    "import subprocess, sys, time\n"
    "ps = [subprocess.Popen(['sleep', '600']) for _ in range(int(sys.argv[1]))]\n"
    "time.sleep(600)\n"
)


def cpu_of_polling(n: int, interval: float, seconds: float) -> tuple[float, float]:
    """(% of one core, ms per poll) with ``n`` processes below the stand-in kernel."""
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL, str(n)])
    try:
        analyzer = Analyzer(load_policy(None))
        watcher = ProcessWatcher(
            ProcessJudge(lambda: analyzer), lambda: {kernel.pid: Owner("k", "u")}
        )
        time.sleep(1.0 + n / 200)  # the children start
        watcher.poll()  # the first pass judges every process once
        polls, cpu0, wall0 = 0, time.process_time(), time.monotonic()
        while time.monotonic() - wall0 < seconds:
            watcher.poll()
            polls += 1
            time.sleep(interval)
        cpu = time.process_time() - cpu0
        return 100 * cpu / (time.monotonic() - wall0), 1000 * cpu / polls
    finally:
        for child in psutil.Process(kernel.pid).children(recursive=True):
            child.kill()
        kernel.kill()
        kernel.wait()


def exec_to_kill(interval: float, trials: int, connector: bool) -> list[float]:
    """Seconds from starting a stand-in miner to its death, the watcher in its thread.
    The miners are children of this process, which the watcher takes as the kernel."""
    folder = Path(tempfile.mkdtemp())
    miner = folder / "xmrig"
    miner.write_text("#!/bin/sh\nsleep 600\n")
    miner.chmod(0o755)
    analyzer = Analyzer(load_policy(None))
    watcher = ProcessWatcher(
        ProcessJudge(lambda: analyzer),
        lambda: {os.getpid(): Owner("k", "u")},
        interval=interval,
        connector=connector,
    )
    watcher.start()
    time.sleep(0.5)  # the thread opens the connector
    times = []
    try:
        for _ in range(trials):
            time.sleep(random.uniform(0, interval))
            start = time.monotonic()
            p = subprocess.Popen([str(miner), "-o", "stratum+tcp://pool.example.com:3333"])
            while p.poll() is None and time.monotonic() - start < 10:
                time.sleep(0.002)
            times.append(time.monotonic() - start)
    finally:
        watcher.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    for n in (50, 500):
        cpu, per_poll = cpu_of_polling(n, args.interval, args.seconds)
        print(f"watched processes {n:4d}: {cpu:.2f}% of one core, {per_poll:.1f} ms per poll")
    for connector in (False, True):
        if connector and os.geteuid() != 0:
            print("exec to kill with the process connector: needs root, not measured")
            continue
        times = sorted(exec_to_kill(args.interval, args.trials, connector))
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        how = "process connector" if connector else f"polling every {args.interval} s"
        print(
            f"exec to kill ({len(times)} trials, {how}): p50 {statistics.median(times):.3f} s, "
            f"p99 {p99:.3f} s, max {times[-1]:.3f} s"
        )


if __name__ == "__main__":
    main()
