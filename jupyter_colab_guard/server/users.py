"""Who a request counts for (see identity.py), their tier, and whether they are an admin."""

from __future__ import annotations

from typing import Any

from ..policy import Identity
from .identity import user_groups, user_name, uses_owner


class UserResolver:
    def __init__(
        self,
        *,
        owner: str,
        identity_mode: str,
        identity_provider: Any,
        admin_users: set[str],
        user_tiers: dict[str, str],
        default_tier: str | None,
        hub_admins: bool = False,
        owner_admin: bool = False,
    ) -> None:
        self.owner = owner
        self.owner_mode = uses_owner(identity_mode, identity_provider)
        self.admin_users = admin_users
        self.user_tiers = user_tiers
        self.default_tier = default_tier
        # JupyterHub: the Hub's admin flag (hub_user["admin"]) makes a guard admin
        self.hub_admins = hub_admins
        # a single-user server: its owner (every logged-in request, owner mode) is an admin
        self.owner_admin = owner_admin

    def resolve_user(self, user_obj: Any) -> str:
        """The user strikes land on (see identity.py)."""
        if self.owner_mode:
            return self.owner
        return user_name(user_obj) or self.owner

    def tier_of(self, user: str) -> str | None:
        return self.user_tiers.get(user, self.default_tier)

    def identity(self, user: str, user_obj: Any = None) -> Identity:
        return Identity(user=user, groups=user_groups(user_obj), tier=self.tier_of(user))

    def is_admin(self, user: str, user_obj: Any = None) -> bool:
        """In ``admin_users``, the owner of a single-user server (``owner_admin``, only in
        owner mode), or (``hub_admins``) a JupyterHub admin according to the
        Hub's own user model of this request (never a claim of the client)."""
        if user in self.admin_users:
            return True
        if self.owner_admin and self.owner_mode and user == self.owner:
            return True
        if self.hub_admins and not self.owner_mode:
            hub_user = getattr(user_obj, "hub_user", None)
            return isinstance(hub_user, dict) and hub_user.get("admin") is True
        return False
