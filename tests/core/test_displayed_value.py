"""A cell that ends in an expression leaves its value in `_` (IPython's display hook); a
later cell can run it. Sessions follow `_` to that value."""

from __future__ import annotations

import pytest

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.policy import load_policy

ANALYZER = Analyzer(load_policy(None))
MINER = "'./xmrig -o pool.example:3333'"


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (f'"import os; os.system({MINER})"\n', "exec(_)\n"),
        (f"x = 1\n{MINER}\n", "import os\nos.system(_)\n"),
        (
            "prefix = './xm'\nprefix + 'rig -o pool.example:3333'\n",
            "import subprocess\nsubprocess.run(_, shell=True)\n",
        ),
    ],
)
def test_the_value_a_cell_displays_is_followed_into_later_cells(first: str, then: str) -> None:
    session = ANALYZER.session()
    assert not session.check(first)  # a string on its own runs nothing
    assert "mining-miner-binary" in {f.rule for f in session.check(then)}
