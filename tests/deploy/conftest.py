"""Fixtures of the deployment tests: a throw-away PostgreSQL cluster per test session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgcluster import PgCluster, cluster_or_skip

# async tests run on an event loop the way pytest-jupyter runs them in tests/server
from pytest_jupyter.jupyter_core import (  # noqa: F401
    jp_asyncio_loop,
    pytest_pycollect_makeitem,
    pytest_pyfunc_call,
)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One cluster for the session (skips when PostgreSQL is not installed)."""
    with cluster_or_skip() as cluster:
        yield cluster


@pytest.fixture
def own_pg_cluster() -> Iterator[PgCluster]:
    """A cluster of the test's own (tests that stop the server)."""
    with cluster_or_skip() as cluster:
        yield cluster


# the server tests' websocket kernel client (tests/server/guard_helpers.py)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
