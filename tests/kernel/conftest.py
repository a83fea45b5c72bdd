"""Fixtures for the kernel extension tests: real kernels through jupyter_client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

sys.path.insert(0, str(Path(__file__).parent))

from kernel_client import make_workdir, running_kernel


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "analyzer: kernel tests that run the real analyzer")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("kernel"))


@pytest.fixture(scope="module")
def kc(workdir: Path) -> Iterator[BlockingKernelClient]:
    """One guarded kernel per test module (test policy, audit log in workdir)."""
    with running_kernel(workdir) as client:
        yield client


@pytest.fixture
def side_effect(workdir: Path) -> Iterator[Path]:
    """The file ./forbidden-tool writes; removed before and after each test."""
    path = workdir / "side-effect.txt"
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)
