"""Escalation ladder: pure evaluation and the steps a real server takes."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_colab_guard.server.escalation import DEFAULT_LADDER, evaluate, parse_ladder
from jupyter_colab_guard.server.managers import GuardMappingMixin

H = 3600.0
LADDER = parse_ladder(DEFAULT_LADDER)


def test_ladder_levels():
    assert evaluate(LADDER, [], 0).level == "none"
    st = evaluate(LADDER, [0.0], 10)
    assert (st.level, st.next_level, st.strikes_to_next) == ("warning", "restricted", 2)
    # 3 strikes within 24h: restricted for the cool-down, then back to warning
    times = [0.0, 10.0, 20.0]
    st = evaluate(LADDER, times, 30)
    assert (st.level, st.until) == ("restricted", 20.0 + H)
    assert evaluate(LADDER, times, 20 + H + 1).level == "warning"
    # 3 strikes spread over more than 24h never restrict
    assert evaluate(LADDER, [0.0, 13 * H, 26 * H], 26 * H + 1).level == "warning"
    # 5 strikes: suspended, with no end
    st = evaluate(LADDER, [0.0, 30 * H, 60 * H, 90 * H, 120 * H], 500 * H)
    assert (st.level, st.until, st.next_level) == ("suspended", None, None)


def test_bad_ladder_refused():
    for bad in (
        [{"level": "banned", "strikes": 1}],
        [{"level": "warning", "strikes": 0}],
        [{"level": "warning", "strikes": 1, "typo": 1}],
    ):
        with pytest.raises(ValueError):
            parse_ladder(bad)


@pytest.fixture
def guard_config():
    return {
        "escalation": [
            {"level": "warning", "strikes": 1},
            {"level": "restricted", "strikes": 2, "window": 3600, "cooldown": 600},
            {"level": "suspended", "strikes": 3},
        ]
    }


async def test_steps_on_a_server(guard, jp_fetch, auth, fetch_json, jp_serverapp):
    blocked, fine = "!forbidden-tool", "print('fine')"
    d = guard.check_execute(user_obj="alice", kernel_id="k", code=blocked)
    assert (d.reason, d.status.level) == ("block", "warning")
    assert not guard.check_execute(user_obj="alice", kernel_id="k", code=fine).refuse
    # a warn rule alone is no strike: it counts only once the user lets it run
    d = guard.check_execute(user_obj="alice", kernel_id="k", code="import noisymod")
    assert (d.refuse, d.warn, d.status.level) == (False, True, "warning")
    # the second strike restricts: even fine code is refused
    d = guard.check_execute(user_obj="alice", kernel_id="k", code=blocked)
    assert (d.refuse, d.reason, d.status.level) == (True, "block", "restricted")
    d = guard.check_execute(user_obj="alice", kernel_id="k", code=fine)
    assert d.refuse and d.reason == "restricted" and d.status.until
    assert guard.status("bob").level == "none"  # per user
    # third strike: suspended, new kernels refused
    d = guard.check_execute(user_obj="alice", kernel_id="k", code=blocked)
    assert d.status.level == "suspended"
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "api",
            "kernels",
            method="POST",
            body=json.dumps({"name": "python3"}),
            headers=auth("alice"),
        )
    assert err.value.code == 403
    # the refused start is not left pending (the server's kernel list and shutdown
    # would fail on it): the guard's kernel manager subclass forgets it
    assert json.loads((await jp_fetch("api", "kernels", headers=auth("alice"))).body) == []
    assert isinstance(jp_serverapp.kernel_manager, GuardMappingMixin)
    assert jp_serverapp.kernel_manager._pending_kernels == {}
    page = (await jp_fetch("colab-guard/", headers=auth("alice"))).body.decode()
    assert "suspended" in page
    # an admin reset lifts everything
    await fetch_json(
        "colab-guard", "api", "admin", "users", "alice", "reset", user="root", method="POST"
    )
    assert not guard.check_execute(user_obj="alice", kernel_id="k", code=fine).refuse
