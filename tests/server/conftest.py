"""Fixtures for the server extension tests: a real jupyter_server with the extension,
an identity provider mapping fixed tokens to users, and a websocket kernel client."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from guard_helpers import V1, KernelClient, TokenUserProvider, auth_header

# pytest-jupyter has no entry point: bring its fixtures and hooks into this directory
from pytest_jupyter.jupyter_server import *  # noqa: F403

HERE = Path(__file__).parent


@pytest.fixture
def auth() -> Any:
    """``auth("alice")``: request headers of a user."""
    return auth_header


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    shutil.copy(HERE / "policy.yaml", path)
    return path


@pytest.fixture
def guard_config() -> dict[str, Any]:
    """Override in a test module to change ColabGuardApp settings."""
    return {}


@pytest.fixture
def jp_server_config(policy_file: Path, guard_config: dict[str, Any]) -> Any:
    from traitlets.config import Config

    guard = {
        "policy_path": str(policy_file),
        "admin_users": ["root"],
        "store_cell_text": True,
        "policy_poll_interval": 0,  # tests call poll_policy() themselves
        "service_name": "TestLab",
    }
    guard.update(guard_config)
    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_colab_guard": True},
                "identity_provider_class": TokenUserProvider,
            },
            "ColabGuardApp": guard,
        }
    )


@pytest.fixture(autouse=True)
def extensions_started(request: pytest.FixtureRequest) -> None:
    """pytest-jupyter never runs the server's loop start, where ServerApp runs each
    extension's start hook (_start_jupyter_server_extension: the guard's timers, watcher
    and terminal switch): run it for every test that has a server."""
    if "jp_serverapp" not in request.fixturenames:
        return
    app = request.getfixturevalue("jp_serverapp")
    loop = request.getfixturevalue("jp_asyncio_loop")
    loop.run_until_complete(app.extension_manager.start_all_extensions())


@pytest.fixture
def guard(jp_serverapp: Any) -> Any:
    return jp_serverapp.web_app.settings["colab_guard"]


@pytest.fixture
def fetch_json(jp_fetch: Any) -> Any:
    async def go(*parts: str, user: str, method: str = "GET", body: Any = None) -> Any:
        kw: dict[str, Any] = {"method": method, "headers": auth_header(user)}
        if body is not None:
            kw["body"] = json.dumps(body)
        elif method in ("POST", "PUT"):
            kw["body"] = "{}"
        if method == "DELETE":
            kw["allow_nonstandard_methods"] = True
        r = await jp_fetch(*parts, **kw)
        return json.loads(r.body) if r.body else None

    return go


# -- kernels over the websocket ------------------------------------------------------------


@pytest.fixture
def kernel_client(jp_fetch: Any, jp_ws_fetch: Any) -> Any:
    opened: list[Any] = []

    async def open_kernel(user: str = "alice", protocol: str = V1, kernel_id: str | None = None):
        if kernel_id is None:
            r = await jp_fetch(
                "api",
                "kernels",
                method="POST",
                body=json.dumps({"name": "python3"}),
                headers=auth_header(user),
            )
            kernel_id = json.loads(r.body)["id"]
        ws = await jp_ws_fetch(
            "api",
            "kernels",
            kernel_id,
            "channels",
            headers=auth_header(user),
            subprotocols=[V1] if protocol == V1 else None,
        )
        opened.append(ws)
        client = KernelClient(ws, protocol)
        client.kernel_id = kernel_id  # type: ignore[attr-defined]
        return client

    yield open_kernel
    for ws in opened:
        ws.close()
