"""A check that breaks inside the websocket refuses the cell with a reply: the request
is never forwarded, and the frontend is never left waiting for an answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from guard_helpers import V1


@pytest.mark.parametrize("broken", [False, True], ids=["check works", "check breaks"])
async def test_a_broken_check_refuses_with_a_reply(
    kernel_client: Any, guard: Any, tmp_path: Path, broken: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    kc = await kernel_client("alice", V1)
    if broken:  # a fault inside the guard's own code, past the pool's error handling

        async def decide(**_: Any) -> Any:
            raise RuntimeError("injected fault")

        monkeypatch.setattr(guard, "decide", decide)
    res = await kc.execute(f"open({str(marker)!r}, 'w').write('x')", timeout=30)
    if not broken:  # the control: the same benign cell runs
        assert res["reply"]["status"] == "ok"
        assert marker.exists()
        return
    assert res["reply"]["status"] == "error"
    assert res["reply"]["ename"] == "ProhibitedCodeError"
    assert "check failed" in res["reply"]["evalue"]
    assert not marker.exists()
    # the connection still works for the next cell once the fault is gone
    monkeypatch.undo()
    res = await kc.execute("print(6 * 7)", timeout=30)
    assert res["reply"]["status"] == "ok" and "42" in res["text"]
