"""PostgreSQL isolation of a shared strike store: one database role per user.

The schema owner (the Hub, admins' servers) sees and changes everything. Each user's
single-user server connects with a login role of its own, member of the group role
``colab_guard_users``, and row-level security limits that role to its own user's rows:

- ``colab_guard_events``: SELECT and INSERT of rows whose ``user`` is the role's user;
  no UPDATE, DELETE or TRUNCATE, so a strike once written cannot be erased;
- ``colab_guard_users`` (resets) and ``colab_guard_exceptions``: SELECT of own rows only;
- ``colab_guard_appeals``: SELECT and INSERT of own rows;
- ``colab_guard_schema``: SELECT (the server checks the schema version);
- ``colab_guard_policies`` (published policies): SELECT of every row, no writes (only
  the owner publishes).

Which user a login role belongs to is kept in ``colab_guard_roles`` (readable by the
owner only) and read by the SECURITY DEFINER function ``colab_guard_me()`` using
``session_user``. So even a user who gets hold of their server's credentials (e.g. from
a kernel running as the same OS user) can only read their own strikes, which the guard
shows them anyway, and add events against themselves.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

GROUP_ROLE = "colab_guard_users"
ROLE_PREFIX = "cg_"
_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
POLICY_TABLE = "colab_guard_policies"

_OWN = 'USING ("user" = colab_guard_me())'
# table -> (privileges for the group role, RLS policies: (name, command, clause))
_TABLES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "colab_guard_events": (
        "SELECT, INSERT",
        [
            ("own_select", "SELECT", _OWN),
            ("own_insert", "INSERT", 'WITH CHECK ("user" = colab_guard_me())'),
        ],
    ),
    "colab_guard_users": ("SELECT", [("own_select", "SELECT", _OWN)]),
    "colab_guard_exceptions": ("SELECT", [("own_select", "SELECT", _OWN)]),
    "colab_guard_appeals": (
        "SELECT, INSERT",
        [
            ("own_select", "SELECT", _OWN),
            ("own_insert", "INSERT", 'WITH CHECK ("user" = colab_guard_me())'),
        ],
    ),
}


def role_for(user: str) -> str:
    """The login role of a user's servers (a hash: any user name is a safe role name)."""
    return ROLE_PREFIX + hashlib.sha256(user.encode()).hexdigest()[:24]


def setup_isolation(engine: Engine) -> None:
    """Create the group role, the role map, ``colab_guard_me()`` and the RLS policies.

    Run as the schema owner (it needs CREATEROLE) after ``StrikeStore.migrate``.
    Idempotent.
    """
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(7426001)"))  # one Hub at a time
        exists = conn.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": GROUP_ROLE}
        ).first()
        if not exists:
            conn.execute(text(f"CREATE ROLE {GROUP_ROLE} NOLOGIN"))
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS colab_guard_roles "
                '(role TEXT PRIMARY KEY, "user" TEXT NOT NULL)'
            )
        )
        conn.execute(text("REVOKE ALL ON colab_guard_roles FROM PUBLIC"))
        conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION colab_guard_me() RETURNS TEXT "
                "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS "
                '$$ SELECT "user" FROM public.colab_guard_roles WHERE role = session_user $$'
            )
        )
        conn.execute(text("REVOKE ALL ON FUNCTION colab_guard_me() FROM PUBLIC"))
        conn.execute(text(f"GRANT EXECUTE ON FUNCTION colab_guard_me() TO {GROUP_ROLE}"))
        db = conn.execute(text("SELECT quote_ident(current_database())")).scalar()
        conn.execute(text(f"GRANT CONNECT ON DATABASE {db} TO {GROUP_ROLE}"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {GROUP_ROLE}"))
        conn.execute(text(f"GRANT SELECT ON colab_guard_schema TO {GROUP_ROLE}"))
        for table, (privileges, policies) in _TABLES.items():
            conn.execute(text(f"REVOKE ALL ON {table} FROM PUBLIC"))
            conn.execute(text(f"GRANT {privileges} ON {table} TO {GROUP_ROLE}"))
            conn.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
            for name, command, clause in policies:
                conn.execute(text(f"DROP POLICY IF EXISTS {name} ON {table}"))
                conn.execute(
                    text(f"CREATE POLICY {name} ON {table} FOR {command} TO {GROUP_ROLE} {clause}")
                )
            if "INSERT" in privileges:
                conn.execute(text(f"GRANT USAGE ON SEQUENCE {table}_id_seq TO {GROUP_ROLE}"))
        # published policies: every server reads them (no row security); owner writes
        conn.execute(text(f"REVOKE ALL ON {POLICY_TABLE} FROM PUBLIC"))
        conn.execute(text(f"GRANT SELECT ON {POLICY_TABLE} TO {GROUP_ROLE}"))


def ensure_user_role(engine: Engine, user: str) -> tuple[str, str]:
    """Create (or give a new password to) the login role of ``user``'s servers.

    Returns ``(role, password)``. The password changes at every call (every spawn);
    connections already open stay valid.
    """
    role = role_for(user)
    password = secrets.token_urlsafe(24)
    assert _SAFE.match(role) and _SAFE.match(password)
    with engine.begin() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(text(f"{verb} ROLE {role} LOGIN PASSWORD '{password}'"))
        if not exists:
            conn.execute(text(f"GRANT {GROUP_ROLE} TO {role}"))
        conn.execute(
            text(
                'INSERT INTO colab_guard_roles (role, "user") VALUES (:r, :u) '
                'ON CONFLICT (role) DO UPDATE SET "user" = EXCLUDED."user"'
            ),
            {"r": role, "u": user},
        )
    return role, password


def url_for_role(owner_url: str, role: str, password: str, host: str | None = None) -> str:
    """The owner's URL with another role's credentials (and optionally another host)."""
    url = make_url(owner_url).set(username=role, password=password)
    if host:
        url = url.set(host=host)
    return url.render_as_string(hide_password=False)
