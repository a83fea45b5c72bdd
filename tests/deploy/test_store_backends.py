"""The strike store on SQLite and on a real PostgreSQL server: same tests, same code.

Includes concurrent writers: several server-like processes, each with its own store,
write and replay events at the same time; nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from jupyter_colab_guard.store import StoreError, StrikeEvent, StrikeStore
from jupyter_colab_guard.store import schema as S


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/strikes.sqlite"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.url(cluster.create_database())


def make(url: str, spool: Path | None = None, **kw: Any) -> StrikeStore:
    store = StrikeStore(url, spool_path=spool, **kw)
    store.open()
    return store


def count_events(store: StrikeStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(S.events)).scalar() or 0)


def test_schema_version_and_newer_schema_refused(store_url: str):
    store = make(store_url)
    assert store.schema_version() == S.SCHEMA_VERSION
    store.close()
    store = make(store_url)  # reopening is a no-op
    assert store.schema_version() == S.SCHEMA_VERSION
    with store.engine.begin() as conn:
        conn.execute(S.schema_version.insert().values(version=99, applied_at=0))
    with pytest.raises(StoreError):
        store.migrate()
    store.close()


def test_events_resets_exceptions_appeals(store_url: str):
    store = make(store_url)
    t0 = time.time() - 100
    for i in range(3):
        assert store.record(
            StrikeEvent(user="alice", kind="finding", strike=True, ts=t0 + i, kernel_id="k1",
                        cell_hash=f"h{i}", rule="r", category="c", action="block")
        )  # fmt: skip
    store.record(StrikeEvent(user="alice", kind="consent", ts=t0 + 3))
    store.record(StrikeEvent(user="bob", kind="finding", strike=True, ts=t0 + 4))
    assert store.strike_times("alice") == [t0, t0 + 1, t0 + 2]
    assert store.strike_times("alice", since=t0 + 0.5) == [t0 + 1, t0 + 2]
    evs = store.events("alice")
    assert [e["kind"] for e in evs] == ["consent", "finding", "finding", "finding"]
    assert store.get_event(evs[1]["id"])["uid"] == evs[1]["uid"]
    assert store.seen_recently("k1", "h1", "r", t0 - 1)
    assert not store.seen_recently("k1", "h1", "other-rule", t0 - 1)
    assert not store.seen_recently("k2", "h1", None, t0 - 1)

    users = {u["user"]: u for u in store.users()}
    assert (users["alice"]["events"], users["alice"]["strikes"]) == (4, 3)
    store.reset("alice", by="root", ts=t0 + 1.5)
    assert store.strike_times("alice") == [t0 + 2]
    store.reset("alice", by="root", ts=t0 + 10)  # a second reset updates the row
    assert store.strike_times("alice") == [] and store.reset_at("alice") == t0 + 10
    assert {u["user"]: u["strikes"] for u in store.users()} == {"alice": 0, "bob": 1}

    xid = store.grant_exception("alice", "root", "c", None, "research")
    assert [x["id"] for x in store.exceptions(user="alice")] == [xid]
    assert store.revoke_exception(xid, "root") and not store.revoke_exception(xid, "root")
    assert store.exceptions(user="alice") == []
    assert len(store.exceptions(user="alice", active=False)) == 1
    with pytest.raises(ValueError):
        store.grant_exception("alice", "root", None, None)

    aid = store.add_appeal("alice", "it was a test", evs[1]["id"])
    assert [a["id"] for a in store.appeals("alice")] == [aid] and store.appeals("bob") == []
    store.close()


def test_failed_write_is_spooled_and_replayed_once(store_url: str, tmp_path: Path):
    spool = tmp_path / "spool.jsonl"
    errors: list[tuple[str, int]] = []
    store = make(store_url, spool, on_error=lambda op, err, n: errors.append((op, n)))
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE colab_guard_events"))
    ev = StrikeEvent(user="alice", kind="finding", strike=True)
    assert store.record(ev) is False
    assert errors == [("record", 1)] and store.pending == 1 and spool.exists()
    assert store.flush_pending() == 1 and errors[-1] == ("retry", 1)
    # the same event is recorded again (a retry from elsewhere): held once
    store.record(ev)
    store.close()
    # a new process finds the spool and writes it once the table is back (open migrates)
    store2 = make(store_url, spool)
    assert store2.pending == 0 and not spool.exists()
    assert [e["uid"] for e in store2.events("alice")] == [ev.uid]
    store2.record(ev)  # replaying a stored event never inserts it twice
    assert len(store2.events("alice")) == 1 and count_events(store2) == 1
    store2.close()


def _writer(url: str, spool: str, worker: int, n: int, shared: list[str]) -> tuple[int, int]:
    """One server-like process: its own store; records n strikes over 3 users, reads
    strike counts in between, and replays a set of events every worker also replays."""
    store = StrikeStore(url, spool_path=spool)
    store.open()
    for i in range(n):
        store.record(StrikeEvent(user=f"user{i % 3}", kind="finding", strike=True,
                                 kernel_id=f"w{worker}", cell_hash=f"{worker}-{i}"))  # fmt: skip
        if i % 10 == 0:
            store.strike_times(f"user{i % 3}")
    for uid in shared:  # the same events, replayed by every process at once
        store.record(StrikeEvent(user="replayed", kind="finding", strike=True, uid=uid))
    pending = store.flush_pending()
    store.close()
    return worker, pending


def test_concurrent_writers_lose_nothing(store_url: str, tmp_path: Path):
    workers, n = 4, 40
    shared = [f"shared-{i:03d}" for i in range(10)]
    ctx = mp.get_context("spawn")
    args = [(store_url, str(tmp_path / f"spool{w}.jsonl"), w, n, shared) for w in range(workers)]
    make(store_url).close()  # schema first, like a deployment's first server
    with ctx.Pool(workers) as pool:
        results = pool.starmap(_writer, args)
    assert sorted(results) == [(w, 0) for w in range(workers)]  # nothing left spooled
    store = make(store_url)
    assert count_events(store) == workers * n + len(shared)
    per_user = {u["user"]: u["strikes"] for u in store.users()}
    assert per_user == {"user0": 56, "user1": 52, "user2": 52, "replayed": len(shared)}
    assert not any((tmp_path / f"spool{w}.jsonl").exists() for w in range(workers))
    store.close()


def test_many_stores_open_a_new_database_at_once(store_url: str) -> None:
    """Several servers starting together on a new database: every one opens the store
    (schema set-up serialised / retried), one schema version row."""
    import threading

    errors: list[BaseException] = []
    stores: list[StrikeStore] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        try:
            store = StrikeStore(store_url)
            barrier.wait()
            store.open()
            stores.append(store)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(stores) == 4 and all(s.ready for s in stores)
    with stores[0].engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(S.schema_version)).scalar()
    assert rows == 1
    for s in stores:
        s.close()
