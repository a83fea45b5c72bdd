"""The guard's Prometheus series, scraped from a real server's ``/metrics`` (issue 12):
refusals by reason and the findings behind them, the check histogram, store failures and
the spool, the policy in force, a kernel report's labels, and a process the watcher
kills. Every value is read before and after, so each assertion can fail."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from guard_helpers import V1, auth_header, post_report, server_refusal
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from jupyter_colab_guard.server import metrics

HERE = Path(__file__).parent
BLOCKED = "!forbidden-tool --go"
BLOCK_LABELS = {
    "source": "server",
    "category": "forbidden_tools",
    "rule": "forbidden-tool-shell",
    "action": "block",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def guard_config() -> dict[str, Any]:
    # no kernel-side guard: the server's check alone decides (and kernels start faster)
    return {"kernel_extension": False}


async def scrape(jp_fetch: Any) -> Samples:
    """Every sample of the server's /metrics, by (name, sorted labels)."""
    r = await jp_fetch("metrics", headers=auth_header("root"))
    out: Samples = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sample's value (0 when the series does not exist yet)."""
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sum over the samples of ``metric`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == metric and want <= set(lab))


async def test_a_refused_cell_counts_its_reason_its_finding_and_its_check_time(
    kernel_client: Any, jp_fetch: Any, guard: Any
) -> None:
    kc = await kernel_client("alice", V1)
    before = await scrape(jp_fetch)
    res = await kc.execute(BLOCKED)
    assert server_refusal(res) == "block"
    after = await scrape(jp_fetch)

    def delta(metric: str, /, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert delta("colab_guard_refusals_total", reason="block") == 1
    assert delta("colab_guard_findings_total", **BLOCK_LABELS) == 1
    for reason in metrics.REASONS:  # no other reason moved (and each is exported)
        assert ("colab_guard_refusals_total", (("reason", reason),)) in after
        if reason != "block":
            assert delta("colab_guard_refusals_total", reason=reason) == 0
    # the check was timed: one more observation, a positive duration, in its buckets
    assert delta("colab_guard_check_duration_seconds_count") == 1
    assert delta("colab_guard_check_duration_seconds_sum") > 0
    assert delta("colab_guard_check_duration_seconds_bucket", le="+Inf") == 1
    assert value(after, "colab_guard_checks_in_progress") == 0
    # an allowed cell is timed too, and refuses nothing
    assert (await kc.execute("print(6 * 7)"))["text"].strip() == "42"
    last = await scrape(jp_fetch)
    assert value(last, "colab_guard_check_duration_seconds_count") == (
        value(after, "colab_guard_check_duration_seconds_count") + 1
    )
    assert total(last, "colab_guard_refusals_total") == total(after, "colab_guard_refusals_total")


async def test_a_warned_cell_counts_a_finding_but_no_refusal(
    kernel_client: Any, jp_fetch: Any, guard: Any
) -> None:
    kc = await kernel_client("alice", "json")
    before = await scrape(jp_fetch)
    res = await kc.execute("import noisymod")  # warn: the kernel runs it (and fails)
    assert server_refusal(res) is None
    after = await scrape(jp_fetch)
    warn = {"source": "server", "category": "noisy", "rule": "noisy-import", "action": "warn"}
    assert (
        value(after, "colab_guard_findings_total", **warn)
        - value(before, "colab_guard_findings_total", **warn)
        == 1
    )
    assert total(after, "colab_guard_refusals_total") == total(before, "colab_guard_refusals_total")


async def test_refusals_by_reason_too_large_and_restricted(
    kernel_client: Any, jp_fetch: Any, guard: Any
) -> None:
    kc = await kernel_client("bob", "json")
    guard.max_cell_size = 100
    before = await scrape(jp_fetch)
    assert server_refusal(await kc.execute("x = 1\n" * 50)) == "too_large"
    mid = await scrape(jp_fetch)
    name = "colab_guard_refusals_total"
    assert value(mid, name, reason="too_large") - value(before, name, reason="too_large") == 1
    # three strikes restrict (the default ladder): the next harmless cell is refused
    for _ in range(3):
        assert server_refusal(await kc.execute(BLOCKED)) == "block"
    assert server_refusal(await kc.execute("1")) == "restricted"
    after = await scrape(jp_fetch)
    assert value(after, name, reason="block") - value(mid, name, reason="block") == 3
    assert value(after, name, reason="restricted") - value(mid, name, reason="restricted") == 1
    assert value(after, name, reason="too_large") == value(mid, name, reason="too_large")


async def test_a_failing_store_counts_write_failures_spooled_events_and_unavailable(
    kernel_client: Any, jp_fetch: Any, guard: Any
) -> None:
    kc = await kernel_client("alice", "json")
    before = await scrape(jp_fetch)
    assert value(before, "colab_guard_store_pending_events") == 0
    with guard.store.engine.begin() as conn:  # every write (and read) of events fails now
        conn.execute(text("DROP TABLE colab_guard_events"))
    assert server_refusal(await kc.execute(BLOCKED)) == "block"  # recorded in the spool
    # where alice stands cannot be read: fail_mode closed refuses a harmless cell
    assert server_refusal(await kc.execute("1")) == "unavailable"
    guard.store.flush_pending()  # the retry fails too
    after = await scrape(jp_fetch)
    name = "colab_guard_store_write_failures_total"
    for op in ("record", "retry"):
        assert value(after, name, operation=op) - value(before, name, operation=op) == 1, op
    assert value(after, "colab_guard_store_pending_events") == guard.store.pending == 1
    name = "colab_guard_refusals_total"
    assert value(after, name, reason="unavailable") - value(before, name, reason="unavailable") == 1


async def test_the_policy_in_force_and_refused_reloads(
    jp_fetch: Any, guard: Any, policy_file: Path
) -> None:
    first = await scrape(jp_fetch)
    old = guard.policy.version
    assert value(first, "colab_guard_policy_info", name="test-policy", version=old) == 1
    assert value(first, "colab_guard_policy_loaded") == 1
    shutil.copy(HERE / "policy_v2.yaml", policy_file)
    assert guard.poll_policy() is True
    new = guard.policy.version
    assert new != old
    second = await scrape(jp_fetch)
    info = [lab for (n, lab), _v in second.items() if n == "colab_guard_policy_info"]
    assert [dict(lab)["version"] for lab in info] == [new]  # one series: the version in force
    policy_file.write_text("version: 1\nrules: [nonsense\n")
    assert guard.poll_policy() is False
    third = await scrape(jp_fetch)
    name = "colab_guard_policy_load_failures_total"
    assert value(third, name) - value(second, name) == 1
    assert total(third, "colab_guard_policy_info", version=new) == 1  # still in force


async def test_kernel_report_labels_are_those_of_the_policy(jp_fetch: Any, guard: Any) -> None:
    """A kernel report (any code in the kernel can post one) counts its findings, but a
    category or rule the policy does not have is counted as ``other``: a user cannot
    make the series grow."""
    token = guard.register_kernel("kernel-m", "alice")
    body = {
        "events": [
            {
                "kind": "runtime_block",
                "category": "forbidden_tools",
                "rule": "forbidden-tool-shell",
                "action": "block",
            },
            *(
                {"kind": "finding", "category": f"made-up-{i}", "rule": f"x{i}", "action": "log"}
                for i in range(5)
            ),
        ]
    }
    before = await scrape(jp_fetch)
    out = await post_report(jp_fetch, f"Bearer {token}", body)
    assert out["recorded"] == 6
    after = await scrape(jp_fetch)
    name = "colab_guard_findings_total"
    kernel_block = {**BLOCK_LABELS, "source": "kernel"}
    assert value(after, name, **kernel_block) - value(before, name, **kernel_block) == 1
    other = {"source": "kernel", "category": "other", "rule": "other", "action": "log"}
    assert value(after, name, **other) - value(before, name, **other) == 5
    assert not [lab for (n, lab) in after if n == name and "made-up" in str(lab)]


async def test_series_are_registered_once_per_process(jp_fetch: Any, guard: Any) -> None:
    """Each server this test process started built a GuardService: the series are still
    one set in the default registry, and /metrics reads the guard built last."""
    assert metrics.series() is metrics.series()
    assert metrics.current_guard() is guard
    r = await jp_fetch("metrics", headers=auth_header("root"))
    helps = [
        line for line in r.body.decode().splitlines() if line.startswith("# HELP colab_guard_")
    ]
    names = [line.split()[2] for line in helps]
    assert len(names) == len(set(names)) >= 10, names
    assert "colab_guard_refusals_total" in names


# -- the process watcher --------------------------------------------------------------------

MINER = "#!/bin/sh\nwhile true; do date >> {marker}; sleep 0.1; done\n"
POOL = "stratum+tcp://pool.example.com:3333"


class TestRuntimeKill:
    @pytest.fixture
    def guard_config(self) -> dict[str, Any]:
        return {"kernel_extension": False, "watch_processes": True, "watch_interval": 0.2}

    @pytest.fixture
    def policy_file(self, tmp_path: Path) -> Path:
        """The shipped Colab policy folder (it knows miners)."""
        path = tmp_path / "colab"
        shutil.copytree(HERE.parents[1] / "policies" / "colab", path)
        return path

    async def test_a_killed_miner_is_counted(
        self, kernel_client: Any, jp_fetch: Any, guard: Any, tmp_path: Path
    ) -> None:
        folder = tmp_path / "upload"
        folder.mkdir()
        miner = folder / "xmrig"
        miner.write_text(MINER.format(marker=folder / "marker"))
        miner.chmod(0o755)
        (folder / "run.sh").write_text(f"./xmrig -o {POOL} -u wallet &\nsleep 60\n")
        kc = await kernel_client("alice", V1)
        before = await scrape(jp_fetch)
        code = (
            f"import os, subprocess\nos.chdir({str(folder)!r})\n"
            "subprocess.Popen(['bash', 'run.sh'])"
        )
        assert (await kc.execute(code))["reply"]["status"] == "ok"  # the text shows nothing
        kills, name = "colab_guard_runtime_kills_total", "colab_guard_findings_total"
        found = {"source": "watcher", "action": "block"}

        async def counted() -> tuple[list[dict[str, Any]], float, float, Samples]:
            """The watcher's block events in the store, and the kills and watcher block
            findings counted since ``before``."""
            after = await scrape(jp_fetch)
            events = [e for e in guard.store.events("alice") if e["source"] == "watcher"]
            got_kills = total(after, kills) - total(before, kills)
            got_found = total(after, name, **found) - total(before, name, **found)
            return events, got_kills, got_found, after

        # a kill is counted just before it is recorded: wait until both agree
        deadline = time.monotonic() + 30
        while True:
            events, got_kills, got_found, after = await counted()
            runtime = [e for e in events if e["kind"] == "runtime"]
            blocked = [e for e in events if e["action"] == "block"]
            settled = (got_kills, got_found) == (len(runtime), len(blocked))
            if (runtime and settled) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert runtime, events
        assert got_kills == len(runtime), (got_kills, runtime)
        assert got_found == len(blocked), (got_found, blocked)
        cat, rule = runtime[0]["category"], runtime[0]["rule"]
        assert cat == "crypto_mining"
        assert value(after, kills, category=cat, rule=rule) >= 1
