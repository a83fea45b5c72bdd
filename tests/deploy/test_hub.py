"""JupyterHub with a shared PostgreSQL strike store (docs/deploy.md, "The tested shape").

Two users and an admin; single-user servers run ``jupyterhub-singleuser`` with the guard.
- the user of a strike is the Hub user of the request;
- Hub admins are guard admins (their own server's admin API sees every user);
- a user's kernel has no store credentials in its environment; the credentials it can
  still dig out of its server process (same OS user) are a per-user database role that
  sees only that user's rows and can erase nothing;
- a suspended user can start neither kernels nor a new server until an admin resets them.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from guard_helpers import V1, KernelClient
from hubproc import HubProc, missing_reason
from serverproc import TEST_POLICY, refused
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

pytestmark = [pytest.mark.hub, pytest.mark.postgres]

LADDER = [{"level": "warning", "strikes": 1}, {"level": "suspended", "strikes": 2}]
BLOCKED = "!forbidden-tool --now"

# run in alice's kernel: what can code in a kernel reach?
PROBE = textwrap.dedent(
    """
    import json, os
    out = {"env_has_url": any("postgresql" in v for v in os.environ.values())
                          or "COLAB_GUARD_STORE_URL" in os.environ}
    raw = open(f"/proc/{os.getppid()}/environ", "rb").read().split(b"\\0")
    env = dict(x.decode().split("=", 1) for x in raw if b"=" in x)
    url = env.get("COLAB_GUARD_STORE_URL", "")
    out["parent_env_has_url"] = bool(url)
    if url:
        import psycopg
        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                               autocommit=True)
        q = lambda sql: conn.execute(sql).fetchall()
        out["visible_users"] = sorted({r[0] for r in q('SELECT "user" FROM colab_guard_events')})
        for name, sql in [("delete", "DELETE FROM colab_guard_events"),
                          ("update", "UPDATE colab_guard_events SET strike = false"),
                          ("reset", "INSERT INTO colab_guard_users VALUES ('alice', 9e18, 'x')"),
                          ("forge", "INSERT INTO colab_guard_events (uid, ts, \\"user\\", source, "
                                    "kind, strike) VALUES ('f', 0, 'bob', 'kernel', 'x', true)")]:
            try:
                q(sql) if sql.startswith("SELECT") else conn.execute(sql)
                out[name] = "allowed"
            except psycopg.Error as err:
                out[name] = type(err).__name__
    print(json.dumps(out))
    """
)


@pytest.fixture
def hub(pg_cluster, tmp_path):
    """The Hub, configured (the test starts it: it needs the test's event loop)."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    owner = "hubowner" + tmp_path.name[-6:].replace("-", "").lower()
    db = pg_cluster.create_database(owner=owner, owner_password="owner-secret")
    owner_url = pg_cluster.url(db, user=owner, password="owner-secret")
    singleuser = {
        "ColabGuardApp": {
            "policy_path": str(TEST_POLICY),
            "escalation": LADDER,
            "policy_poll_interval": 0,
            "store_retry_interval": 1.0,
        }
    }
    h = HubProc(tmp_path, store_url=owner_url, singleuser=singleuser, ladder=LADDER,
                admins={"admin"}, users={"alice", "bob"})  # fmt: skip
    yield h
    h.stop()


class UserSession:
    """A user talking to their own single-user server through the proxy."""

    def __init__(self, hub: HubProc, user: str, token: str) -> None:
        self.hub, self.user, self.token = hub, user, token
        self._ws: list[Any] = []

    async def get(self, path: str, method: str = "GET", body: Any = None) -> Any:
        return await self.hub.request(f"user/{self.user}/{path}", self.token, method, body)

    async def kernel(self) -> KernelClient:
        kid = (await self.get("api/kernels", "POST", {"name": "python3"}))["id"]
        ws = await websocket_connect(
            HTTPRequest(
                f"ws://127.0.0.1:{self.hub.port}/user/{self.user}/api/kernels/{kid}/channels",
                headers={"Authorization": f"token {self.token}"},
            ),
            subprotocols=[V1],
        )
        self._ws.append(ws)
        return KernelClient(ws, V1)

    def close(self) -> None:
        for ws in self._ws:
            ws.close()


async def status_code(coro: Any) -> int:
    try:
        await coro
    except HTTPClientError as err:
        return err.code
    return 200


async def test_two_users_one_store_admins_isolation_and_suspension(hub: HubProc):
    await hub.start()
    sessions = {}
    for user in ("alice", "bob", "admin"):
        await hub.spawn(user)
        sessions[user] = UserSession(hub, user, await hub.user_token(user))
    alice, bob, admin = sessions["alice"], sessions["bob"], sessions["admin"]
    try:
        # identity: each strike lands on the Hub user who ran the cell
        ka, kb = await alice.kernel(), await bob.kernel()
        assert (await ka.execute("print(6 * 7)"))["text"].strip() == "42"
        assert refused(await ka.execute(BLOCKED)) == "block"
        assert refused(await kb.execute(BLOCKED)) == "block"
        me = await alice.get("colab-guard/api/strikes/me")
        assert (me["user"], me["strikes"], me["level"]) == ("alice", 1, "warning")

        # one store: the admin's own server sees both users; non-admins get 403
        users = (await admin.get("colab-guard/api/admin/users"))["users"]
        assert {u["user"]: u["strikes"] for u in users} == {"alice": 1, "bob": 1}
        assert await status_code(alice.get("colab-guard/api/admin/users")) == 403
        # another user's server is not reachable with alice's Hub token
        assert await status_code(alice.hub.request("user/bob/api/kernels", alice.token)) == 403

        # alice's kernel: no credentials in its environment; what it digs out of its
        # server process (same OS user) is a role limited to alice's rows
        res = await ka.execute(PROBE)
        probe = json.loads(res["text"].strip().splitlines()[-1])
        assert probe["env_has_url"] is False
        # the residual risk of servers running as the kernel's OS user: /proc/<ppid>/environ
        assert probe["parent_env_has_url"] is True
        assert probe["visible_users"] == ["alice"]  # ... contained by row-level security
        assert probe["delete"] == probe["update"] == "InsufficientPrivilege"
        assert probe["reset"] == "InsufficientPrivilege"
        assert probe["forge"] == "InsufficientPrivilege"  # RLS WITH CHECK
        users = (await admin.get("colab-guard/api/admin/users"))["users"]
        assert {u["user"]: u["strikes"] for u in users} == {"alice": 1, "bob": 1}

        # bob's second strike suspends him: kernels shut down, no new kernel, no new server
        assert refused(await kb.execute(BLOCKED)) == "block"
        assert (await bob.get("colab-guard/api/strikes/me"))["level"] == "suspended"
        assert await status_code(bob.get("api/kernels", "POST", {"name": "python3"})) == 403
        await hub.stop_server("bob")
        assert await status_code(hub.api("users/bob/server", "POST")) == 403  # Hub-side
        assert "refusing to spawn a server for suspended bob" in hub.log_text()
        assert not (await hub.api("users/bob")).get("servers")

        # an admin resets bob (from the admin's own server); bob can start again
        reset = await admin.get("colab-guard/api/admin/users/bob/reset", "POST", {})
        assert (reset["user"], reset["strikes"], reset["level"]) == ("bob", 0, "none")
        await hub.spawn("bob")
        kb2 = await bob.kernel()
        assert (await kb2.execute("print('back')"))["text"].strip() == "back"
        # alice could not have done that reset herself
        assert (
            await status_code(alice.get("colab-guard/api/admin/users/alice/reset", "POST", {}))
            == 403
        )
    finally:
        for s in sessions.values():
            s.close()
