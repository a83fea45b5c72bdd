"""Hub admin flag -> guard admin, without a Hub: the flag is read from the Hub's own user
model that JupyterHub's identity provider attaches to the request's user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from jupyter_colab_guard.server.escalation import parse_ladder
from jupyter_colab_guard.server.events import GuardEvents
from jupyter_colab_guard.server.service import GuardService
from jupyter_colab_guard.store import StrikeStore


@dataclass
class HubUser:  # the shape of jupyterhub.singleuser.extension.JupyterHubUser
    username: str
    hub_user: dict[str, Any] = field(default_factory=dict)


class HubProvider:  # any provider that is not one of jupyter_server's anonymous ones
    pass


def service(tmp_path, hub_admins: bool, identity: str = "auto") -> GuardService:
    store = StrikeStore(f"sqlite:///{tmp_path}/s.sqlite")
    store.open()
    return GuardService(
        store=store, ladder=parse_ladder([]), policy_path=None, owner="alice",
        identity_mode=identity, identity_provider=HubProvider(), admin_users={"listed"},
        store_cell_text=False, fail_mode="closed", user_tiers={}, default_tier=None,
        events=GuardEvents(None), hub_admins=hub_admins,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("hub_admins", "identity", "user", "expected"),
    [
        (True, "auto", HubUser("boss", {"name": "boss", "admin": True}), True),
        (True, "auto", HubUser("bob", {"name": "bob", "admin": False}), False),
        (True, "auto", HubUser("bob", {"name": "bob"}), False),
        (True, "auto", HubUser("eve", {"name": "eve", "admin": "yes"}), False),  # not True
        (False, "auto", HubUser("boss", {"name": "boss", "admin": True}), False),
        (True, "owner", HubUser("boss", {"name": "boss", "admin": True}), False),
        (True, "auto", HubUser("listed"), True),  # admin_users still applies
    ],
)
def test_hub_admin_flag(tmp_path, hub_admins, identity, user, expected):
    guard = service(tmp_path, hub_admins, identity)
    assert guard.is_admin(guard.resolve_user(user), user) is expected
