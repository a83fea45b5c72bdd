"""Identity provider of the load test: ``Authorization: token load-<name>`` is user <name>.

Loaded by the server the load test starts (``ServerApp.identity_provider_class``)."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User

PREFIX = "load-"


class LoadUsersProvider(IdentityProvider):
    def get_user(self, handler: Any) -> User | None:
        scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "token" or not token.startswith(PREFIX):
            return None
        handler._token_authenticated = True
        return User(username=token[len(PREFIX) :])
