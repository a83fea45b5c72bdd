"""The check pauses the cyclic garbage collector (a collection walks the whole heap, the
user's data included) and leaves it as it found it."""

from __future__ import annotations

import gc

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.policy import load_policy

CELL = "import os, subprocess\n" + "".join(
    f"subprocess.run(['echo', 'step {i}'], check=True)\nos.system('ls /tmp/{i}')\n"
    for i in range(300)
)


def test_collections_wait_until_the_check_is_done() -> None:
    analyzer = Analyzer(load_policy(None))
    phases: list[str] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        phases.append(phase)

    gc.callbacks.append(seen)
    try:
        analyzer.check(CELL)
    finally:
        gc.callbacks.remove(seen)
    # 67 collections ran during this check before the pause; now at most the one the
    # allocations left over may start once the collector is back
    assert phases.count("start") <= 1
    assert gc.isenabled()


def test_a_paused_collector_stays_paused() -> None:
    gc.disable()
    try:
        Analyzer(load_policy(None)).check(CELL)
        assert not gc.isenabled()
    finally:
        gc.enable()
