"""policy_source = "store": the newest policy published in the store is in force; a bad
or unreadable store keeps the policy in force; the admin API publishes (validated
first); every execute_request forwarded to a kernel carries the server's policy version
(a client's own value is replaced) and running kernels take it before their next cell.

One server here, on its SQLite store; tests/deploy/test_policy_store.py runs two servers
on one PostgreSQL store.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from guard_helpers import V1, server_refusal
from prometheus_client import generate_latest
from sqlalchemy import insert, text
from tornado.httpclient import HTTPClientError

from jupyter_colab_guard.server import events as E
from jupyter_colab_guard.server import metrics
from jupyter_colab_guard.store import schema as S
from jupyter_colab_guard.store.policies import PolicyVersions, sha256

HERE = Path(__file__).parent
V2 = (HERE / "policy_v2.yaml").read_text()  # also refuses other-tool
OTHER = "!other-tool --go"
ENFORCED = (
    "from jupyter_colab_guard.kernel.extension import guard_of\n"
    "print(guard_of(get_ipython()).policy_version)"
)


@pytest.fixture
def guard_config() -> dict[str, Any]:
    return {"policy_source": "store"}


def refuses(guard: Any, code: str) -> bool:
    """Whether the policy in force blocks ``code`` (the server's analysis; no strikes)."""
    findings = guard.analyse("alice", "alice", "k", code, []) or []
    return any(f.action == "block" for f in findings)


def failures() -> float:
    return float(metrics.series().policy_failures._value.get())


async def events_of(jp_serverapp: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def listener(logger: Any, schema_id: str, data: Any) -> None:
        seen.append(dict(data))

    jp_serverapp.event_logger.add_listener(schema_id=E.POLICY, listener=listener)
    return seen


async def test_store_mode_follows_published_versions(guard, jp_serverapp, caplog):
    seen = await events_of(jp_serverapp)
    versions = PolicyVersions(guard.store.engine)
    # nothing published yet: the file's policy applies
    assert guard.store_version is None and guard.policy.name == "test-policy"
    file_version = guard.policy.version
    assert not refuses(guard, OTHER)
    assert guard.poll_policy() is None

    row = versions.publish(V2, by="ops", comment="other-tool too")
    assert guard.poll_policy() is True
    assert guard.store_version == 1 and guard.policy.version == row.policy_version
    assert guard.policy.version != file_version
    assert refuses(guard, OTHER)
    assert guard.poll_policy() is None  # nothing new: one max() query

    # a row that bypassed validation (another tool, a newer format): refused, logged
    before = failures()
    with guard.store.engine.begin() as conn:
        bad = "version: 1\nname: broken\nrules: [{id: x}]\n"
        conn.execute(
            insert(S.policies).values(
                version=2, document=bad, sha256=sha256(bad), published_by="sql",
                published_at=0.0, comment=None,
            )
        )  # fmt: skip
    assert guard.poll_policy() is False
    assert guard.store_version == 1 and refuses(guard, OTHER)
    assert failures() == before + 1
    assert guard.poll_policy() is None  # refused once, not every poll
    assert "stored policy version 2 refused" in caplog.text

    # the store cannot be read: the policy in force stays, said once
    with guard.store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE colab_guard_policies RENAME TO moved_away"))
    assert guard.poll_policy() is False
    assert guard.poll_policy() is False
    assert refuses(guard, OTHER) and guard.policy.version == row.policy_version
    assert caplog.text.count("the policy store cannot be read") == 1
    assert failures() == before + 2
    with guard.store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE moved_away RENAME TO colab_guard_policies"))

    # rollback: the first document published again is version 3
    first = (HERE / "policy.yaml").read_text()
    versions.publish(first, by="ops", comment="rollback")
    assert guard.poll_policy() is True
    assert guard.store_version == 3 and not refuses(guard, OTHER)
    assert guard.policy.version == file_version  # same text as the file: same version

    for _ in range(40):  # listeners run as tasks
        if len(seen) >= 4:
            break
        await asyncio.sleep(0.05)
    assert [(e["status"], e["source"]) for e in seen] == [
        ("reloaded", "store"), ("refused", "store"), ("refused", "store"), ("reloaded", "store")
    ]  # fmt: skip
    assert seen[1]["store_version"] == 2 and seen[1]["problems"]
    scraped = generate_latest().decode()
    assert "colab_guard_policy_store_version 3.0" in scraped


async def test_admin_api_validates_then_publishes(guard, fetch_json, jp_fetch):
    # non-admins: 403 on every method
    for method, body in (("GET", None), ("POST", {"document": V2})):
        with pytest.raises(HTTPClientError) as err:
            await fetch_json("colab-guard", "api", "admin", "policy", user="alice",
                             method=method, body=body)  # fmt: skip
        assert err.value.code == 403
    out = await fetch_json("colab-guard", "api", "admin", "policy", user="root")
    assert out["versions"] == [] and out["in_force"]["source"] == "store"
    assert out["in_force"]["store_version"] is None

    # invalid: 400 with the validator's problems, nothing stored, nothing changes
    broken = V2.replace("severity: high", "severity: extreme", 1)
    with pytest.raises(HTTPClientError) as err:
        await fetch_json("colab-guard", "api", "admin", "policy", user="root", method="POST",
                         body={"document": broken})  # fmt: skip
    assert err.value.code == 400
    problems = json.loads(err.value.response.body)["problems"]
    assert any("severity" in p for p in problems)
    for bad in ({}, {"document": ""}, {"document": V2, "comment": 5}):
        with pytest.raises(HTTPClientError) as err:
            await fetch_json("colab-guard", "api", "admin", "policy", user="root",
                             method="POST", body=bad)  # fmt: skip
        assert err.value.code == 400
    assert (await fetch_json("colab-guard", "api", "admin", "policy", user="root"))[
        "versions"
    ] == []
    assert not refuses(guard, OTHER)

    # valid: stored as version 1, by the admin, and in force on this server at once
    body = {"document": V2, "comment": "more tools"}
    out = await fetch_json(
        "colab-guard", "api", "admin", "policy", user="root", method="POST", body=body
    )
    assert out["version"] == 1 and out["published_by"] == "root"
    assert out["in_force"]["store_version"] == 1
    assert refuses(guard, OTHER)
    one = await fetch_json("colab-guard", "api", "admin", "policy", "versions", "1", user="root")
    assert one["document"] == V2 and one["comment"] == "more tools"
    with pytest.raises(HTTPClientError) as err:
        await fetch_json("colab-guard", "api", "admin", "policy", "versions", "9", user="root")
    assert err.value.code == 404
    # cookie-less POST without the token: XSRF / auth refuse it (no header at all)
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("colab-guard", "api", "admin", "policy", method="POST",
                       body=json.dumps({"document": V2}), headers={})  # fmt: skip
    assert err.value.code == 403


@pytest.mark.parametrize("protocol", [V1, "json"])
async def test_requests_carry_the_servers_version_not_the_clients(guard, kernel_client, protocol):
    kc = await kernel_client("alice", protocol)
    code = "print(get_ipython().kernel.get_parent()['metadata'].get('colab_guard_policy'))"
    msg = kc.execute_msg(code)
    msg["metadata"] = {"colab_guard_policy": "0123456789abcdef", "other": 1}
    await kc.send("shell", msg)
    mid = msg["header"]["msg_id"]
    res = (await kc.collect([mid]))[mid]
    assert res["text"].strip() == guard.policy.version
    code = "print(get_ipython().kernel.get_parent()['metadata'].get('other'))"
    msg = kc.execute_msg(code)
    msg["metadata"] = {"other": 1}
    await kc.send("shell", msg)
    mid = msg["header"]["msg_id"]
    assert (await kc.collect([mid]))[mid]["text"].strip() == "1"  # other fields kept


async def test_running_kernel_takes_a_published_version(guard, kernel_client):
    kc = await kernel_client("alice", V1)
    old = guard.policy.version
    assert (await kc.execute(ENFORCED))["text"].strip() == old
    PolicyVersions(guard.store.engine).publish(V2, by="ops")
    assert guard.poll_policy() is True
    new = guard.policy.version
    assert new != old
    res = await kc.execute(ENFORCED)
    assert res["text"].strip() == new  # in force in the kernel before this cell
    res = await kc.execute(OTHER)
    assert server_refusal(res) == "block"


def test_at_start_a_refused_newest_version_falls_back_to_the_newest_valid(tmp_path):
    """A server starting when the newest stored version does not load puts the newest
    older version that does in force (not the file's policy, not nothing)."""
    from jupyter_colab_guard.server.policy_holder import PolicyHolder
    from jupyter_colab_guard.server.settings import GuardSettings
    from jupyter_colab_guard.store import StrikeStore

    store = StrikeStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    store.migrate()
    versions = PolicyVersions(store.engine)
    good = versions.publish(V2, by="ops")
    bad = "version: 1\nname: broken\nrules: [{id: x}]\n"
    with store.engine.begin() as conn:
        conn.execute(
            insert(S.policies).values(
                version=2, document=bad, sha256=sha256(bad), published_by="sql",
                published_at=0.0, comment=None,
            )
        )  # fmt: skip
    holder = PolicyHolder(str(HERE / "policy.yaml"), E.GuardEvents(None), GuardSettings(), versions)
    holder.load_initial()
    assert holder.store_version == 1 and holder.policy is not None
    assert holder.policy.version == good.policy_version
    assert holder.poll() is None  # version 2 is not tried again
    holder.shutdown()
    store.close()
