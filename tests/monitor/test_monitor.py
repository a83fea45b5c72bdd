"""`colab-guard monitor` for real (issue 8, part 2): the daemon runs as root in its own
process; an unprivileged local user created for the test runs harmless stand-ins (a
copy of the shell binary named like a miner, or carrying a miner's strings, writing a
marker file). The miner is killed and a `runtime` strike lands in the store for the
right user; the same payload runs to completion without the monitor, and benign
processes, root's processes and warn-only findings are left running."""

from __future__ import annotations

import random
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from monitor_helpers import (
    LOOPS,
    MINER_STRINGS,
    LocalUser,
    MonitorProc,
    events_of,
    fake_program,
    finished,
    payload,
    wait_exit,
)

from jupyter_colab_guard.store import StrikeStore

KILLED = 128 + 9  # runuser's exit code when its child died of SIGKILL
RUNS = 10  # kills timed by the figures test


def miner(workdir: Path) -> Path:
    return fake_program(workdir / "xmrig", MINER_STRINGS)


def test_the_payload_runs_to_completion_without_the_monitor(user: LocalUser, workdir: Path) -> None:
    marker = workdir / "marker"
    p = user.start(str(miner(workdir)), "-c", payload(marker))
    code, _ = wait_exit(p, 30)
    assert code == 0 and finished(marker)
    assert len(marker.read_text().splitlines()) == LOOPS + 1


@pytest.mark.parametrize("options", [[], ["--no-connector"]], ids=["exec-events", "polling"])
def test_a_users_miner_is_killed_and_recorded(
    start_monitor: Callable[..., MonitorProc],
    user: LocalUser,
    workdir: Path,
    store_url: str,
    options: list[str],
) -> None:
    monitor = start_monitor(*options)
    marker = workdir / "marker"
    p = user.start(str(miner(workdir)), "-c", payload(marker))
    code, took = wait_exit(p, 10)
    assert code == KILLED and not finished(marker), (code, monitor.text())
    assert took < (2.0 if options else 0.5), took  # polling every second, or exec events
    (event,) = events_of(store_url, user.name)
    assert (event["kind"], event["source"], event["strike"]) == ("runtime", "monitor", True)
    assert (event["category"], event["rule"], event["action"]) == (
        "crypto_mining",
        "fake-miner",
        "block",
    )
    detail = str(event["detail"])
    assert "killed" in detail and f"uid {user.uid}, user from login name" in detail
    line = monitor.wait_log(rf"process \d+ of {user.name} .* killed .*")
    assert "crypto_mining/fake-miner" in line and "xmrig -c" in line
    metrics = monitor.metrics()
    assert "colab_guard_monitor_kills_total 1.0" in metrics
    assert 'colab_guard_monitor_findings_total{rule="fake-miner"}' in metrics
    exec_events = "0.0" if options else "1.0"
    assert f"colab_guard_monitor_exec_events {exec_events}" in metrics


def test_jupyterhub_user_in_the_environment_names_the_user(
    start_monitor: Callable[..., MonitorProc], user: LocalUser, workdir: Path, store_url: str
) -> None:
    start_monitor()
    marker = workdir / "marker"
    p = user.start(str(miner(workdir)), "-c", payload(marker), env={"JUPYTERHUB_USER": "alice"})
    assert wait_exit(p, 10)[0] == KILLED and not finished(marker)
    (event,) = events_of(store_url, "alice")
    assert event["kind"] == "runtime" and event["strike"]
    assert "user from JUPYTERHUB_USER of pid" in str(event["detail"])
    assert events_of(store_url, user.name, timeout=0) == []


def test_user_from_uid_ignores_the_environment(
    start_monitor: Callable[..., MonitorProc], user: LocalUser, workdir: Path, store_url: str
) -> None:
    """Hosts where every hub user has a uid of their own: the login name only."""
    start_monitor("--user-from", "uid")
    marker = workdir / "marker"
    p = user.start(str(miner(workdir)), "-c", payload(marker), env={"JUPYTERHUB_USER": "bob"})
    assert wait_exit(p, 10)[0] == KILLED
    (event,) = events_of(store_url, user.name)
    assert event["kind"] == "runtime" and "user from login name" in str(event["detail"])
    assert events_of(store_url, "bob", timeout=0) == []


def test_a_child_cannot_name_another_user(
    start_monitor: Callable[..., MonitorProc], user: LocalUser, workdir: Path, store_url: str
) -> None:
    """The user is the one of the outermost process of the uid (the spawner set it);
    a miner started with JUPYTERHUB_USER=mallory by alice's shell is alice's. This one is
    known by its content only (renamed, no miner name anywhere in the text)."""
    start_monitor()
    worker = fake_program(workdir / "worker", MINER_STRINGS)
    pidfile = workdir / "pid"
    launch = workdir / "launch.sh"
    launch.write_text(
        f"JUPYTERHUB_USER=mallory {worker} -c 'sleep 30' &\necho $! > {pidfile}\nwait\n"
        f"echo after >> {workdir / 'after'}\n"
    )
    p = user.start("sh", str(launch), env={"JUPYTERHUB_USER": "alice"})
    assert wait_exit(p, 10)[0] == 0  # the shell ran on; its child was killed
    (event,) = events_of(store_url, "alice")
    assert event["rule"] == "fake-miner" and event["kind"] == "runtime"
    assert f"pid {pidfile.read_text().strip()} killed" in str(event["detail"])
    assert events_of(store_url, "mallory", timeout=0) == []


def test_benign_processes_and_roots_processes_are_left_alone(
    start_monitor: Callable[..., MonitorProc], user: LocalUser, workdir: Path, store_url: str
) -> None:
    monitor = start_monitor()
    benign = workdir / "benign"
    p = user.start("sh", "-c", payload(benign))
    # root is never watched: the miner itself runs to completion as root
    rooted = workdir / "root-marker"
    code, _ = wait_exit(subprocess.Popen([str(miner(workdir)), "-c", payload(rooted)]), 30)
    assert code == 0 and finished(rooted)
    assert wait_exit(p, 30)[0] == 0 and finished(benign)
    assert events_of(store_url, user.name, timeout=0) == []
    assert events_of(store_url, "root", timeout=0) == []
    assert "colab_guard_monitor_kills_total 0.0" in monitor.metrics()


def test_an_admin_exception_in_the_store_applies(
    start_monitor: Callable[..., MonitorProc], user: LocalUser, workdir: Path, store_url: str
) -> None:
    start_monitor()
    store = StrikeStore(store_url)
    store.grant_exception(user.name, "ops", "crypto_mining", None, "studies miners")
    store.close()
    marker = workdir / "marker"
    p = user.start(str(miner(workdir)), "-c", payload(marker))
    assert wait_exit(p, 30)[0] == 0 and finished(marker)
    assert events_of(store_url, user.name, timeout=0) == []


def test_a_warn_rule_records_without_killing(
    start_monitor: Callable[..., MonitorProc], user: LocalUser, workdir: Path, store_url: str
) -> None:
    start_monitor()
    marker = workdir / "marker"
    tool = fake_program(workdir / "noisytool")
    p = user.start(str(tool), "-c", payload(marker))
    assert wait_exit(p, 30)[0] == 0 and finished(marker)
    (event,) = events_of(store_url, user.name)
    assert (event["kind"], event["action"], event["rule"]) == ("finding", "warn", "noisy-tool")
    assert event["strike"]  # it ran: a warn counts, as a warn cell that runs does in the server


def test_hub_only_watches_only_hub_users(
    start_monitor: Callable[..., MonitorProc], user: LocalUser, workdir: Path, store_url: str
) -> None:
    start_monitor("--hub-only")
    plain, hub = workdir / "plain", workdir / "hub"
    outside = user.start(str(miner(workdir)), "-c", payload(plain))
    inside = user.start(str(miner(workdir)), "-c", payload(hub), env={"JUPYTERHUB_USER": "bob"})
    # SIGKILL, seen through runuser (137) or, when the kill lands on its pid as the
    # payload is exec'd, directly (-9)
    assert wait_exit(inside, 10)[0] in (KILLED, -9) and not finished(hub)
    assert wait_exit(outside, 30)[0] == 0 and finished(plain)
    assert [e["rule"] for e in events_of(store_url, "bob")] == ["fake-miner"]
    assert events_of(store_url, user.name, timeout=0) == []


def test_a_changed_policy_is_reloaded(
    start_monitor: Callable[..., MonitorProc],
    user: LocalUser,
    workdir: Path,
    store_url: str,
    policy_file: Path,
) -> None:
    monitor = start_monitor("--policy-poll", "0.2")
    text = policy_file.read_text()
    policy_file.write_text(text.replace("action: warn", "action: block"))
    monitor.wait_log(r"policy .* reloaded")
    marker = workdir / "marker"
    p = user.start(str(fake_program(workdir / "noisytool")), "-c", payload(marker))
    assert wait_exit(p, 10)[0] == KILLED and not finished(marker)
    (event,) = events_of(store_url, user.name)
    assert (event["kind"], event["action"]) == ("runtime", "block")
    policy_file.write_text("version: [broken")  # refused: the policy in force stays
    monitor.wait_log(r"new policy refused")
    p = user.start(str(miner(workdir)), "-c", payload(marker))
    assert wait_exit(p, 10)[0] == KILLED


@pytest.mark.parametrize(
    ("options", "bound"),
    [(["--interval", "30"], 0.1), (["--no-connector", "--interval", "1"], 1.5)],
    ids=["exec-events", "polling-1s"],
)
def test_exec_to_kill_figures(
    start_monitor: Callable[..., MonitorProc],
    user: LocalUser,
    workdir: Path,
    options: list[str],
    bound: float,
) -> None:
    """Time from exec to kill (issue 8's targets: under 100 ms with exec events, where
    the poll interval is 30 s so only the process connector can do it; under 1.5 s
    polling every second), from the monitor's own figure (process start to verdict,
    to a clock tick) and from outside (runuser started to its child dead)."""
    monitor = start_monitor(*options)
    outside = []
    for n in range(RUNS):
        time.sleep(random.uniform(0, 1))  # not in step with the polls
        marker = workdir / f"marker{n}"
        start = time.monotonic()
        p = user.start(str(miner(workdir)), "-c", payload(marker))
        assert wait_exit(p, 10)[0] == KILLED
        outside.append(time.monotonic() - start)
    monitor.wait_log(rf"(?s)(killed after \d+ ms.*){{{RUNS}}}")
    inside = [float(ms) / 1000 for ms in re.findall(r"killed after (\d+) ms", monitor.text())]
    print(
        f"\n{' '.join(options)}: exec to kill (monitor) p50 {statistics.median(inside):.3f} s, "
        f"max {max(inside):.3f} s; runuser start to child dead p50 "
        f"{statistics.median(outside):.3f} s, max {max(outside):.3f} s ({RUNS} runs)"
    )
    assert max(inside) < bound, inside
    assert max(outside) < bound + 0.5, outside


@pytest.mark.postgres
def test_strikes_land_in_postgresql(
    start_monitor: Callable[..., MonitorProc], user: LocalUser, workdir: Path, pg_cluster: object
) -> None:
    """The shared store of a JupyterHub deployment: the owner's URL, as the Hub has it."""
    cluster = pg_cluster
    url = cluster.url(cluster.create_database())  # type: ignore[attr-defined]
    start_monitor(url=url.replace("postgresql+psycopg://", "postgresql://"))
    marker = workdir / "marker"
    p = user.start(str(miner(workdir)), "-c", payload(marker), env={"JUPYTERHUB_USER": "alice"})
    assert wait_exit(p, 10)[0] == KILLED and not finished(marker)
    (event,) = events_of(url, "alice")
    assert (event["kind"], event["source"], event["rule"]) == ("runtime", "monitor", "fake-miner")
