"""Which user a request counts for.

jupyter_server's built-in providers (token / password) have no stable identity: each
login, and each token request without a cookie, gets a new random anonymous name. On
those servers every strike lands on one stable user, the server's owner. A custom
provider (JupyterHub's, or an operator's) names real users and is used as is.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from jupyter_server.auth.identity import (
    IdentityProvider,
    LegacyIdentityProvider,
    PasswordIdentityProvider,
)

ANONYMOUS_PROVIDERS = (IdentityProvider, PasswordIdentityProvider, LegacyIdentityProvider)


def default_owner() -> str:
    """JupyterHub's user for a single-user server, else the OS account."""
    hub_user = os.environ.get("JUPYTERHUB_USER")
    if hub_user:
        return hub_user
    try:
        return getpass.getuser()
    except Exception:
        return "owner"


def uses_owner(mode: str, provider: Any) -> bool:
    """``mode`` is auto | provider | owner."""
    if mode == "owner":
        return True
    if mode == "provider":
        return False
    return type(provider) in ANONYMOUS_PROVIDERS


def user_name(user: Any) -> str | None:
    """The username of a jupyter_server User (or a legacy str/dict)."""
    if user is None:
        return None
    if isinstance(user, str):
        return user or None
    if isinstance(user, dict):
        return user.get("username") or user.get("name")
    return getattr(user, "username", None) or None


def user_groups(user: Any) -> tuple[str, ...]:
    groups = getattr(user, "groups", None)
    if groups is None and isinstance(user, dict):
        groups = user.get("groups")
    return tuple(str(g) for g in groups or ())
