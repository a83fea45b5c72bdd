"""Per-user PostgreSQL roles with row-level security (jupyter_colab_guard.store.postgres):
a user's server can write and read that user's events only, and erase nothing."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, ProgrammingError

from jupyter_colab_guard.store import StrikeEvent, StrikeStore
from jupyter_colab_guard.store import postgres as pg

pytestmark = pytest.mark.postgres


@pytest.fixture
def owner_url(pg_cluster) -> str:
    owner = "cgowner_" + pg_cluster.create_database()[2:8]
    db = pg_cluster.create_database(owner=owner, owner_password="ownerpw")
    return pg_cluster.url(db, user=owner, password="ownerpw")


def test_user_role_sees_and_writes_only_its_own_rows(owner_url: str):
    owner = StrikeStore(owner_url)
    owner.migrate()
    pg.setup_isolation(owner.engine)
    pg.setup_isolation(owner.engine)  # idempotent
    owner.record(StrikeEvent(user="bob", kind="finding", strike=True))
    owner.reset("bob", by="root", ts=1.0)
    owner.grant_exception("bob", "root", "c", None)

    role, password = pg.ensure_user_role(owner.engine, "alice@example.org")
    assert role == pg.role_for("alice@example.org") and role.startswith("cg_")
    alice_url = pg.url_for_role(owner_url, role, password)
    alice = StrikeStore(alice_url)
    alice.open()  # the server's start: schema check works with the limited role
    assert alice.record(StrikeEvent(user="alice@example.org", kind="finding", strike=True))
    assert alice.add_appeal("alice@example.org", "please")
    assert len(alice.strike_times("alice@example.org")) == 1
    # other users' rows are invisible
    assert alice.events("bob") == [] and alice.strike_times("bob") == []
    assert alice.exceptions() == [] and alice.appeals("bob") == []
    assert [u["user"] for u in alice.users()] == ["alice@example.org"]

    # writing for someone else is refused by the database (the event is spooled, not stored)
    assert alice.record(StrikeEvent(user="bob", kind="finding", strike=True)) is False
    assert len(owner.events("bob")) == 1

    # erasing is impossible: no UPDATE / DELETE / TRUNCATE, no reset, no exceptions
    from sqlalchemy import text

    for sql in (
        "DELETE FROM colab_guard_events",
        "UPDATE colab_guard_events SET strike = false",
        "TRUNCATE colab_guard_events",
        "INSERT INTO colab_guard_users VALUES ('alice@example.org', 9e18, 'me')",
        'INSERT INTO colab_guard_exceptions ("user", category, granted_by, granted_at) '
        "VALUES ('alice@example.org', 'c', 'me', 0)",
        "SELECT * FROM colab_guard_roles",
        "DROP TABLE colab_guard_events",
        "ALTER TABLE colab_guard_events DISABLE ROW LEVEL SECURITY",
    ):
        with pytest.raises((ProgrammingError, DBAPIError)), alice.engine.begin() as conn:
            conn.execute(text(sql))
    with pytest.raises((ProgrammingError, DBAPIError)):
        alice.reset("alice@example.org", by="alice@example.org")
    assert len(owner.strike_times("alice@example.org")) == 1  # still there

    # a new spawn gets a new password; the old one no longer logs in
    _, password2 = pg.ensure_user_role(owner.engine, "alice@example.org")
    assert password2 != password
    alice.close()
    stale = StrikeStore(alice_url)
    with pytest.raises(DBAPIError):
        stale.schema_version()
    stale.close()
    owner.close()


POLICY = (
    "version: 1\nname: iso\ncategories: [{id: c, title: C, description: D, action: block,"
    " severity: high}]\nrules: [{id: r, category: c, message: M, match: {import: xmod},"
    " examples: {match: ['import xmod'], no_match: ['import os']}}]\n"
)


def test_user_role_reads_published_policies_and_cannot_publish(owner_url: str):
    """Store mode under per-user roles: every server reads the versions, none writes."""
    from sqlalchemy import text

    from jupyter_colab_guard.store.policies import PolicyVersions

    owner = StrikeStore(owner_url)
    owner.migrate()
    pg.setup_isolation(owner.engine)
    PolicyVersions(owner.engine).publish(POLICY, by="ops")
    role, password = pg.ensure_user_role(owner.engine, "carol")
    carol = StrikeStore(pg.url_for_role(owner_url, role, password))
    versions = PolicyVersions(carol.engine)
    assert versions.latest_number() == 1 and versions.get(1).document == POLICY
    with pytest.raises((ProgrammingError, DBAPIError)):
        versions.publish(POLICY.replace("xmod", "ymod"), by="carol")
    for sql in (
        "DELETE FROM colab_guard_policies",
        "UPDATE colab_guard_policies SET comment = 'x'",
    ):
        with pytest.raises((ProgrammingError, DBAPIError)), carol.engine.begin() as conn:
            conn.execute(text(sql))
    assert [v.version for v in PolicyVersions(owner.engine).history()] == [1]
    carol.close()
    owner.close()
