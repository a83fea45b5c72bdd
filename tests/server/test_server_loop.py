"""The pages and the API do their store work off the event loop (issue 12): while one of
them waits on a slow store (a method that sleeps, or a SQLite write lock held by another
connection), the server's ``/api/status`` keeps answering at once."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from typing import Any

import pytest
from guard_helpers import auth_header

SLOW = 1.5  # seconds the store takes
FAST = 0.25  # seconds /api/status may take meanwhile (it takes a few ms)
BLOCKED = "!forbidden-tool --go"

# (method, URL parts, body, user, the store method the handler calls first)
ENDPOINTS = {
    "user page": ("GET", ("colab-guard/",), None, "alice", "events"),
    "my strikes": ("GET", ("colab-guard", "api", "strikes", "me"), None, "alice", "events"),
    "appeal": ("POST", ("colab-guard", "api", "appeals"), {"message": "m"}, "alice", "add_appeal"),
    "admin users": ("GET", ("colab-guard", "api", "admin", "users"), None, "root", "users"),
    "admin user events": (
        "GET",
        ("colab-guard", "api", "admin", "users", "alice", "events"),
        None,
        "root",
        "events",
    ),
    "admin reset": (
        "POST",
        ("colab-guard", "api", "admin", "users", "alice", "reset"),
        {},
        "root",
        "reset",
    ),
    "admin exceptions": (
        "GET",
        ("colab-guard", "api", "admin", "exceptions"),
        None,
        "root",
        "exceptions",
    ),
    "grant exception": (
        "POST",
        ("colab-guard", "api", "admin", "exceptions"),
        {"user": "alice", "category": "noisy"},
        "root",
        "grant_exception",
    ),
    "admin appeals": ("GET", ("colab-guard", "api", "admin", "appeals"), None, "root", "appeals"),
}


async def status_while(jp_fetch: Any, slow: asyncio.Future[Any]) -> list[float]:
    """Seconds each /api/status took, polled until ``slow`` is done."""
    took: list[float] = []
    while not slow.done():
        start = time.perf_counter()
        r = await jp_fetch("api", "status", headers=auth_header("bystander"))
        took.append(time.perf_counter() - start)
        assert json.loads(r.body)["kernels"] >= 0
        await asyncio.sleep(0.05)
    return took


def request(jp_fetch: Any, method: str, parts: tuple[str, ...], body: Any, user: str) -> Any:
    kw: dict[str, Any] = {"method": method, "headers": auth_header(user)}
    if body is not None:
        kw["body"] = json.dumps(body)
    return asyncio.ensure_future(jp_fetch(*parts, **kw))


@pytest.mark.parametrize("endpoint", list(ENDPOINTS.values()), ids=list(ENDPOINTS))
async def test_a_slow_store_does_not_delay_api_status(
    jp_fetch: Any, guard: Any, monkeypatch: pytest.MonkeyPatch, endpoint: tuple[Any, ...]
) -> None:
    method, parts, body, user, store_method = endpoint
    assert guard.check_execute(user_obj="alice", kernel_id="k", code=BLOCKED).refuse
    original = getattr(guard.store, store_method)
    entered = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        time.sleep(SLOW)  # a real wait in whatever thread calls the store
        return original(*args, **kwargs)

    monkeypatch.setattr(guard.store, store_method, slow)
    start = time.perf_counter()
    pending = request(jp_fetch, method, parts, body, user)
    took = await status_while(jp_fetch, pending)
    r = await pending
    elapsed = time.perf_counter() - start
    assert r.code in (200, 201), r.code
    assert entered.is_set()  # the page really waited on the slow store
    assert elapsed >= SLOW
    # the status was asked again and again while the page waited, and answered at once
    assert len(took) >= 5, took
    assert max(took) < FAST, took


async def test_a_sqlite_write_lock_does_not_delay_api_status(jp_fetch: Any, guard: Any) -> None:
    """Another connection holds the database's write lock: the appeal waits for it
    (busy_timeout) in the pool, the event loop does not."""
    path = guard.store.engine.url.database
    assert guard.check_execute(user_obj="alice", kernel_id="k", code=BLOCKED).refuse
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, until the rollback
    threading.Timer(SLOW, holder.rollback).start()
    start = time.perf_counter()
    pending = request(
        jp_fetch, "POST", ("colab-guard", "api", "appeals"), {"message": "m"}, "alice"
    )
    took = await status_while(jp_fetch, pending)
    r = await pending
    holder.close()
    assert r.code == 201
    assert time.perf_counter() - start >= SLOW - 0.1  # it did wait for the lock
    assert [a["message"] for a in guard.store.appeals("alice")] == ["m"]
    assert len(took) >= 5, took
    assert max(took) < FAST, took
