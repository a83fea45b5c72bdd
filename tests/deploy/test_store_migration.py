"""Schema 1 -> 2 on SQLite and on a real PostgreSQL server: a version-1 database with
rows in it is opened by this code; the new columns appear, old rows keep their values
and the new features (answers, expiry, voided strikes) work on them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from jupyter_colab_guard.store import StrikeEvent, StrikeStore
from jupyter_colab_guard.store import schema as S


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/strikes.sqlite"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.url(cluster.create_database())


def make_version_1(url: str, t0: float) -> None:
    """A database as version 1 left it: today's tables without the columns version 2
    added, version row 1, and rows of every kind."""
    store = StrikeStore(url)
    store.open()
    with store.engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        for table, column in S.ADDED_COLUMNS[2]:
            conn.execute(text(f"ALTER TABLE {quote(table.name)} DROP COLUMN {quote(column)}"))
        conn.execute(S.schema_version.delete())
        conn.execute(S.schema_version.insert().values(version=1, applied_at=t0))
        names = {t.name: {c["name"] for c in inspect(conn).get_columns(t.name)} for t in
                 (S.events, S.exceptions, S.appeals)}  # fmt: skip
        assert "voided_at" not in names["colab_guard_events"]
        assert "expires_at" not in names["colab_guard_exceptions"]
        assert "note" not in names["colab_guard_appeals"]
        # rows written by version-1 code (only version-1 columns)
        for i in range(3):
            conn.execute(text(
                'INSERT INTO colab_guard_events (uid, ts, "user", source, kind, rule, strike) '
                "VALUES (:uid, :ts, 'alice', 'server', 'finding', 'r', :strike)"
            ), {"uid": f"v1-{i}", "ts": t0 + i, "strike": True})  # fmt: skip
        conn.execute(text(
            'INSERT INTO colab_guard_exceptions ("user", category, reason, granted_by, '
            "granted_at) VALUES ('alice', 'c', 'old', 'root', :ts)"
        ), {"ts": t0})  # fmt: skip
        conn.execute(text(
            'INSERT INTO colab_guard_appeals (ts, "user", event_id, message, status) '
            "VALUES (:ts, 'alice', NULL, 'old appeal', 'open')"
        ), {"ts": t0 + 10})  # fmt: skip
    store.close()


def test_migration_1_to_2_keeps_rows_and_adds_the_new_columns(store_url: str) -> None:
    t0 = time.time() - 1000
    make_version_1(store_url, t0)
    store = StrikeStore(store_url)
    store.open()  # migrates
    assert store.schema_version() == 2 == S.SCHEMA_VERSION
    with store.engine.connect() as conn:
        versions = [r[0] for r in conn.execute(select(S.schema_version.c.version).order_by(
            S.schema_version.c.version))]  # fmt: skip
        for table, column in S.ADDED_COLUMNS[2]:
            assert column in {c["name"] for c in inspect(conn).get_columns(table.name)}
        assert conn.execute(select(func.count()).select_from(S.events)).scalar() == 3
    assert versions == [1, 2]
    # the old rows, as version 2 reads them
    assert store.strike_times("alice") == [t0, t0 + 1, t0 + 2]
    (x,) = store.exceptions(user="alice")
    assert (x["reason"], x["expires_at"]) == ("old", None)  # no expiry: still applies
    (a,) = store.appeals("alice")
    assert (a["status"], a["note"], a["answered_by"]) == ("open", None, None)
    # the new features on old rows: accepting the old appeal voids the latest strike
    out = store.answer_appeal(a["id"], "root", accept=True, note="fine")
    assert out is not None and out["status"] == "accepted" and out["note"] == "fine"
    assert store.get_event(out["voided_event"])["uid"] == "v1-2"
    assert store.strike_times("alice") == [t0, t0 + 1]
    assert {u["user"]: u["strikes"] for u in store.users()} == {"alice": 2}
    store.grant_exception("alice", "root", None, "r", expires_at=time.time() - 1)  # expired
    assert [e["reason"] for e in store.exceptions(user="alice")] == ["old"]
    store.record(StrikeEvent(user="alice", kind="finding", strike=True))
    assert len(store.strike_times("alice")) == 3
    store.close()
    # opening again is a no-op
    store = StrikeStore(store_url)
    store.open()
    assert store.schema_version() == 2 and len(store.strike_times("alice")) == 3
    store.close()
