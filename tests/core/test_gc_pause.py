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


def test_a_check_leaves_no_cycles_of_its_name_index_behind() -> None:
    """The cell's name index answers with lookups that refer back to it; it is released
    after the check, so its parsed statements are freed at once, not by a collection the
    user's next cell pays for."""
    import weakref

    from jupyter_colab_guard.analysis import resolve

    analyzer = Analyzer(load_policy(None))
    made: list[weakref.ref[resolve.CellIndex]] = []
    original = resolve.CellIndex.__init__

    def tracked(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        made.append(weakref.ref(self))

    gc.disable()
    resolve.CellIndex.__init__ = tracked  # type: ignore[method-assign]
    try:
        analyzer.analyse(
            "import os\ncmd = 'ls'\nos.system(cmd)\nos.system(cmd + ' -l')\n",
            __import__("jupyter_colab_guard.analysis.pyscan").analysis.pyscan.Memory(),
            None,
        )
        assert made and all(ref() is None for ref in made)  # freed by reference counting
    finally:
        resolve.CellIndex.__init__ = original  # type: ignore[method-assign]
        gc.enable()
