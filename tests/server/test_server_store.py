"""The strike store on real SQLite files: schema version, WAL, spool and retry."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from jupyter_colab_guard.store import StoreError, StrikeEvent, StrikeStore
from jupyter_colab_guard.store import schema as S


def make(tmp_path, **kw) -> StrikeStore:
    store = StrikeStore(f"sqlite:///{tmp_path}/s.sqlite", spool_path=tmp_path / "spool.jsonl", **kw)
    store.open()
    return store


def test_schema_and_pragmas(tmp_path):
    store = make(tmp_path)
    assert store.schema_version() == S.SCHEMA_VERSION
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    store.close()
    # reopening keeps the version; a newer schema is refused
    store = make(tmp_path)
    with store.engine.begin() as conn:
        conn.execute(S.schema_version.insert().values(version=99, applied_at=0))
    with pytest.raises(StoreError):
        store.migrate()


def test_failed_write_is_spooled_and_replayed(tmp_path):
    errors: list[tuple] = []
    store = make(tmp_path, on_error=lambda op, err, n: errors.append((op, n)))
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE colab_guard_events"))
    ev = StrikeEvent(user="alice", kind="finding", strike=True)
    assert store.record(ev) is False
    assert errors == [("record", 1)] and store.pending == 1
    assert (tmp_path / "spool.jsonl").exists()
    # the retry fails while the table is missing, and says so
    assert store.flush_pending() == 1 and errors[-1] == ("retry", 1)
    # a new process finds the spool and writes it once the database works again
    store.close()
    store2 = make(tmp_path)
    assert store2.pending == 0 and not (tmp_path / "spool.jsonl").exists()
    assert [e["uid"] for e in store2.events("alice")] == [ev.uid]
    assert store2.flush_pending() == 0
    assert len(store2.events("alice")) == 1  # never twice
