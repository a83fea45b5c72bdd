"""The server's owner is an admin by default on a single-user server (owner mode), not
under JupyterHub, not when turned off, and never by name in provider mode."""

from __future__ import annotations

from typing import Any

import pytest
from guard_helpers import auth_header

CASES = {
    # name: (extra config, JupyterHub's environment, admin?)
    "single-user": ({"identity": "owner", "owner": "alice"}, False, True),
    "turned-off": ({"identity": "owner", "owner": "alice", "owner_is_admin": False}, False, False),
    "under-hub": ({"identity": "owner", "owner": "alice"}, True, False),
    "provider-mode": ({"owner": "alice"}, False, False),  # alice is only named like the owner
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if CASES[request.param][1]:
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token-of-the-test")
    return str(request.param)


@pytest.fixture
def guard_config(case: str) -> dict[str, Any]:
    return {"admin_users": [], **CASES[case][0]}


async def test_owner_is_admin_on_a_single_user_server(case: str, guard: Any, http_server_client,
                                                      jp_base_url: str) -> None:  # fmt: skip
    admin = CASES[case][2]
    r = await http_server_client.fetch(
        jp_base_url + "colab-guard/admin", headers=auth_header("alice"), raise_error=False
    )
    assert r.code == (200 if admin else 403), case
    page = await http_server_client.fetch(
        jp_base_url + "colab-guard/", headers=auth_header("alice")
    )
    assert ("admin console" in page.body.decode()) is admin
    assert guard.is_admin("alice", None) is admin
