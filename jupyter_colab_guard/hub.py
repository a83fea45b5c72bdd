"""JupyterHub side of the guard: refuse to spawn suspended users, hand out store roles.

In ``jupyterhub_config.py``::

    from jupyter_colab_guard.hub import ColabGuardHub

    guard = ColabGuardHub(
        store_url="postgresql+psycopg://colab_guard:SECRET@db:5432/colab_guard",
        escalation=LADDER,          # the same ladder as c.ColabGuardApp.escalation
    )
    c.Spawner.pre_spawn_hook = guard.pre_spawn_hook

``pre_spawn_hook`` runs in the Hub before every spawn. It reads the shared store with the
owner's credentials (which stay in the Hub) and refuses (403) a user whose level is
``suspended`` until an admin resets them. It then gives the single-user server the
store URL in ``$COLAB_GUARD_STORE_URL`` (the server extension reads it and removes it
from its environment, so kernels do not inherit it):

- PostgreSQL with ``per_user_roles`` (the default): a login role of that user's own,
  limited by row-level security to that user's rows, without UPDATE or DELETE
  (``jupyter_colab_guard.store.postgres``); Hub admins get ``admin_store_url`` (default:
  the owner's URL) so that their server's admin API can reset users and grant exceptions;
- otherwise ``server_store_url`` (default: ``store_url``) for everyone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from sqlalchemy.engine import make_url
from tornado import web

from .server.escalation import DEFAULT_LADDER, Status, evaluate, parse_ladder
from .store import StrikeStore
from .store import postgres as pg

log = logging.getLogger(__name__)

STORE_URL_ENV = "COLAB_GUARD_STORE_URL"


class ColabGuardHub:
    """State shared by the Hub's hooks: one store connection pool, the ladder."""

    def __init__(
        self,
        store_url: str,
        *,
        escalation: list[dict[str, Any]] | None = None,
        per_user_roles: bool = True,
        admin_store_url: str | None = None,
        server_store_url: str | None = None,
        server_db_host: str | None = None,
    ) -> None:
        self.store_url = store_url
        self.ladder = parse_ladder(escalation if escalation is not None else DEFAULT_LADDER)
        self.is_postgres = make_url(store_url).get_backend_name() == "postgresql"
        self.per_user_roles = per_user_roles and self.is_postgres
        self.admin_store_url = admin_store_url or store_url
        self.server_store_url = server_store_url or store_url
        # host the single-user servers reach the database at, when not the Hub's
        self.server_db_host = server_db_host
        self._store: StrikeStore | None = None
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> ColabGuardHub:
        # traitlets deep-copies config values (the bound hook): keep one shared instance
        return self

    @property
    def store(self) -> StrikeStore:
        """Opened on first use: creates the schema and the row-level security."""
        with self._lock:
            if self._store is None:
                store = StrikeStore(self.store_url)
                store.migrate()
                if self.per_user_roles:
                    pg.setup_isolation(store.engine)
                self._store = store
            return self._store

    def status(self, user: str) -> Status:
        return evaluate(self.ladder, self.store.strike_times(user), time.time())

    def server_url_for(self, user: str, admin: bool) -> str:
        """The store URL a user's single-user server gets."""
        if admin:
            return self.admin_store_url
        if self.per_user_roles:
            role, password = pg.ensure_user_role(self.store.engine, user)
            return pg.url_for_role(self.store_url, role, password, self.server_db_host)
        return self.server_store_url

    async def pre_spawn_hook(self, spawner: Any) -> None:
        """``c.Spawner.pre_spawn_hook``: refuse suspended users, pass the store URL.
        The database work runs in a thread: the Hub's event loop is never held up."""
        await asyncio.to_thread(self._pre_spawn, spawner)

    def _pre_spawn(self, spawner: Any) -> None:
        user = spawner.user
        status = self.status(user.name)
        if status.level == "suspended":
            log.warning("colab-guard: refusing to spawn a server for suspended %s", user.name)
            raise web.HTTPError(
                403,
                f"Your use of this service is suspended ({status.strikes} strikes): "
                "an administrator must review your account before you can start a server.",
            )
        spawner.environment = {
            **spawner.environment,
            STORE_URL_ENV: self.server_url_for(user.name, bool(user.admin)),
        }

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
