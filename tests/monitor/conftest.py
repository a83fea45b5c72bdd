"""Fixtures of the monitor tests: a local user created for the test, a folder it owns,
the monitor as a root subprocess, and (postgres tests) a throw-away PostgreSQL cluster."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from monitor_helpers import LocalUser, MonitorProc, missing_reason

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "deploy"))  # pgcluster.py

from pgcluster import PgCluster, cluster_or_skip  # noqa: E402


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def user() -> Iterator[LocalUser]:
    """An unprivileged local user of its own (uid >= 1000), removed afterwards."""
    made = LocalUser.create()
    yield made
    made.remove()


@pytest.fixture
def workdir(user: LocalUser) -> Iterator[Path]:
    """A folder the user owns (the test's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="cg-monitor-", dir="/tmp"))
    shutil.chown(path, user.uid, user.gid)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    shutil.copy(HERE / "policy.yaml", path)
    return path


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/strikes.sqlite"


@pytest.fixture
def start_monitor(
    policy_file: Path, store_url: str, tmp_path: Path
) -> Iterator[Callable[..., MonitorProc]]:
    """``start_monitor(*options, store_url=...)``: the monitor running as root; stopped
    with SIGTERM afterwards, which it must obey with exit code 0."""
    started: list[MonitorProc] = []

    def start(*options: str, url: str | None = None) -> MonitorProc:
        log = tmp_path / f"monitor-{len(started)}.log"
        monitor = MonitorProc(policy_file, url or store_url, log, list(options))
        started.append(monitor)
        return monitor.start()

    yield start
    for monitor in started:
        assert monitor.stop() == 0, monitor.text()
        assert "colab-guard monitor: stopped" in monitor.text()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One cluster for the session (skips when PostgreSQL is not installed)."""
    with cluster_or_skip() as cluster:
        yield cluster
