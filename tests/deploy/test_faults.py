"""Faults at run time, on real server processes:

- the PostgreSQL store stops mid-run: prohibited cells are still refused, other cells
  follow ``fail_mode`` (closed: refused, open: run), strikes are spooled and written
  when the database is back; nothing is lost, nothing doubled;
- the policy file is corrupted, then deleted: the policy in force stays (server check and
  new kernels), and a later valid file is picked up.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from serverproc import TEST_POLICY, ServerProc, refused

BENIGN = "print(6 * 7)"
BLOCKED = "!forbidden-tool --now"
WARNED = "import noisymod"


async def wait_for(predicate, timeout: float = 20.0, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await predicate():
                return True
        except Exception:
            pass
        await asyncio.sleep(every)
    return False


@pytest.mark.postgres
async def test_store_down_mid_run_follows_fail_mode_and_loses_nothing(own_pg_cluster, tmp_path):
    pg = own_pg_cluster
    url = pg.url(pg.create_database())
    servers = {
        mode: ServerProc(
            tmp_path / mode,
            {
                "ColabGuardApp": {
                    "store_url": url,
                    "policy_path": str(TEST_POLICY),
                    "owner": f"owner-{mode}",
                    "fail_mode": mode,
                    "store_retry_interval": 0.5,
                    "escalation": [{"level": "warning", "strikes": 1}],
                },
                "KernelGuard": {},
            },
        )
        for mode in ("closed", "open")
    }
    try:
        await asyncio.gather(*(s.start() for s in servers.values()))
        kcs = {m: await s.kernel() for m, s in servers.items()}
        for kc in kcs.values():
            assert (await kc.execute(BENIGN))["text"].strip() == "42"
            assert refused(await kc.execute(BLOCKED)) == "block"

        pg.stop("fast")  # the database goes away mid-run
        for mode, kc in kcs.items():
            assert refused(await kc.execute(BLOCKED)) == "block"  # the policy still holds
            res = await kc.execute(BENIGN)
            if mode == "closed":
                assert refused(res) == "unavailable"
            else:
                assert refused(res) is None and res["text"].strip() == "42"
        # open: a warn cell goes on to the kernel (whose headless default cancels it:
        # declined, no strike); the kernel's own report of it is recognised as the same
        # cell (spooled)
        res = await kcs["open"].execute(WARNED)
        assert refused(res) is None and res["reply"]["status"] == "error"
        # closed: no new kernels while the store is down
        with pytest.raises(Exception, match="503"):
            await servers["closed"].fetch("api/kernels", "POST", {"name": "python3"})
        spools = {m: s.root / "data" / "colab_guard" / "spool.jsonl" for m, s in servers.items()}
        assert all(p.exists() for p in spools.values())

        pg.start()
        expected = {"owner-closed": 2, "owner-open": 2}

        async def written() -> bool:
            rows = pg.execute(
                'SELECT "user", count(*) FROM colab_guard_events WHERE strike GROUP BY "user"',
                db=url.rsplit("/", 1)[1],
            )
            return dict(rows) == expected

        assert await wait_for(written), "spooled strikes were not written"
        assert await wait_for(lambda: _no_spool(spools)), "spool files left behind"
        for mode, s in servers.items():
            me = await s.fetch("colab-guard/api/strikes/me")
            assert me["strikes"] == expected[f"owner-{mode}"]
            # and execution is back to normal
            assert (await kcs[mode].execute(BENIGN))["text"].strip() == "42"
        dupes = pg.execute(
            "SELECT uid FROM colab_guard_events GROUP BY uid HAVING count(*) > 1",
            db=url.rsplit("/", 1)[1],
        )
        assert dupes == []
    finally:
        await asyncio.gather(*(s.stop() for s in servers.values()))


async def _no_spool(spools: dict[str, Path]) -> bool:
    return not any(p.exists() for p in spools.values())


async def test_policy_corrupted_then_deleted_keeps_policy_in_force(tmp_path):
    policy = tmp_path / "policy.yaml"
    shutil.copy(TEST_POLICY, policy)
    server = ServerProc(
        tmp_path / "srv",
        {
            "ColabGuardApp": {
                "policy_path": str(policy),
                "policy_poll_interval": 0.2,
                "escalation": [{"level": "warning", "strikes": 1}],
            }
        },
    )
    try:
        await server.start()
        kc = await server.kernel()
        assert refused(await kc.execute(BLOCKED)) == "block"

        policy.write_text("version: 1\nrules: [this is: not: valid\n")  # corrupted
        await asyncio.sleep(1.0)
        assert "refused" in server.log_text()
        assert refused(await kc.execute(BLOCKED)) == "block"
        assert (await kc.execute(BENIGN))["text"].strip() == "42"
        # a kernel started now gets the policy in force (a private copy), not the broken file
        kc2 = await server.kernel()
        assert (await kc2.execute(BENIGN))["text"].strip() == "42"
        assert refused(await kc2.execute(BLOCKED)) == "block"

        policy.unlink()  # deleted
        await asyncio.sleep(1.0)
        assert refused(await kc.execute(BLOCKED)) == "block"
        kc3 = await server.kernel()
        r3 = await kc3.execute(BENIGN)
        assert r3["text"].strip() == "42", r3
        # the kernel-side guard has the policy too: a cell the server cannot see
        # (built at run time) is stopped by the kernel's runtime check
        res = await kc3.execute("import subprocess; subprocess.run(['forbidden-tool'])")
        assert res["reply"]["status"] == "error"

        shutil.copy(TEST_POLICY.with_name("policy_v2.yaml"), policy)  # a valid file again
        assert await wait_for(lambda: _blocked(kc, "!other-tool"), timeout=10)
    finally:
        await server.stop()


async def _blocked(kc, code: str) -> bool:
    return refused(await kc.execute(code)) == "block"


@pytest.mark.postgres
async def test_servers_starting_together_on_a_new_store_are_all_guarded(pg_cluster, tmp_path):
    """Servers starting at the same time on a new database all load the guard (a lost
    schema set-up race used to leave one of them running unguarded)."""
    url = pg_cluster.url(pg_cluster.create_database())
    servers = [
        ServerProc(
            tmp_path / f"s{i}",
            {"ColabGuardApp": {"store_url": url, "policy_path": str(TEST_POLICY)}},
        )
        for i in range(3)
    ]
    try:
        await asyncio.gather(*(s.start() for s in servers))
        for s in servers:
            me = await s.fetch("colab-guard/api/strikes/me")  # only with the guard loaded
            assert me["strikes"] == 0
            assert "could not be set up" not in s.log_text()
    finally:
        await asyncio.gather(*(s.stop() for s in servers))


async def test_a_guard_that_cannot_load_refuses_every_kernel(tmp_path):
    """A broken guard set-up never leaves the server running kernels unguarded."""
    server = ServerProc(tmp_path / "srv", {"ColabGuardApp": {"store_url": "nosuchdb://x/y"}})
    try:
        await server.start()
        with pytest.raises(Exception, match="503"):
            await server.fetch("api/kernels", "POST", {"name": "python3"})
        assert "could not be set up" in server.log_text()
        kernels = await server.fetch("api/kernels")
        assert kernels == []
        # nor terminals (the terminal manager the server built at link time refuses them)
        with pytest.raises(Exception, match="403"):
            await server.fetch("api/terminals", "POST", {})
    finally:
        await server.stop()


async def test_store_unreachable_at_start_follows_fail_mode(tmp_path):
    """A database that is down when the server starts: the guard still loads; block
    findings are refused, other cells follow fail_mode (open here: they run)."""
    from pgcluster import free_port

    url = f"postgresql+psycopg://nobody:x@127.0.0.1:{free_port()}/nodb"
    server = ServerProc(
        tmp_path / "srv",
        {
            "ColabGuardApp": {
                "store_url": url,
                "policy_path": str(TEST_POLICY),
                "fail_mode": "open",
                "store_retry_interval": 60,
            }
        },
    )
    try:
        await server.start()
        kc = await server.kernel()
        assert refused(await kc.execute(BLOCKED)) == "block"
        assert (await kc.execute(BENIGN))["text"].strip() == "42"
        spool = server.root / "data" / "colab_guard" / "spool.jsonl"
        assert spool.exists()  # the strike waits for the database
    finally:
        await server.stop()
