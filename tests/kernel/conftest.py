"""Fixtures for the kernel extension tests: real kernels through jupyter_client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

sys.path.insert(0, str(Path(__file__).parent))

from kernel_client import make_workdir, running_kernel


def _analyzer_available() -> bool:
    try:
        from jupyter_colab_guard.analysis import Analyzer  # noqa: F401
        from jupyter_colab_guard.policy import load_policy  # noqa: F401
    except Exception:
        return False
    return True


# tests marked `analyzer` need the lead's analyzer (jupyter_colab_guard.analysis)
needs_analyzer = pytest.mark.skipif(
    not _analyzer_available(), reason="jupyter_colab_guard.analysis not available"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "analyzer: needs jupyter_colab_guard.analysis")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("analyzer"):
            item.add_marker(needs_analyzer)


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
