"""Log lines of the guard's modules go through the server's logger (issue 12): they
carry the server's format and obey its --log-level."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from test_server_durability import free_port, start_server, wait_ready

HERE = Path(__file__).parent
# jupyter_server's format: "[I 2026-12-01 02:10:00.048 <logger name>] message"
FORMATTED = re.compile(r"^\[([DIWEC]) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ([\w.]+)\] (.*)$")


def server_dir(tmp: Path, level: str) -> Path:
    (tmp / "config").mkdir()
    shutil.copy(HERE / "policy.yaml", tmp / "policy.yaml")
    config = {
        "ServerApp": {"jpserver_extensions": {"jupyter_colab_guard": True}, "log_level": level},
        "ColabGuardApp": {"policy_path": str(tmp / "policy.yaml"), "policy_poll_interval": 0.2},
    }
    (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    return tmp


def lines_of(tmp: Path, text: str) -> list[str]:
    out = []
    for log in tmp.glob("server-*.log"):
        out += [line for line in log.read_text(errors="replace").splitlines() if text in line]
    return out


@pytest.mark.parametrize("level", ["INFO", "WARN"])
async def test_module_log_lines_use_the_servers_format_and_level(
    tmp_path: Path, level: str
) -> None:
    tmp = server_dir(tmp_path, level)
    port = free_port()
    proc = start_server(tmp, port)
    try:
        await wait_ready(port, proc)
        # policy_holder.py logs the reload at INFO; a broken policy at ERROR
        policy = tmp / "policy.yaml"
        policy.write_text(policy.read_text() + "\n# changed\n")
        time.sleep(1.5)
        policy.write_text("version: 1\nrules: [\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not lines_of(tmp, "refused"):
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    refused = lines_of(tmp, "colab-guard: new policy")
    assert refused, "the ERROR line of the refused policy is missing"
    match = FORMATTED.match(refused[0])
    assert match and match[1] == "E", refused[0]
    assert match[2].startswith("jupyter_colab_guard"), refused[0]
    reloaded = lines_of(tmp, "reloaded (version")
    if level == "INFO":
        assert reloaded and FORMATTED.match(reloaded[0]), reloaded
    else:
        assert not reloaded  # below the server's level
