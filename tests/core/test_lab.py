"""`colab-guard lab` (jupyter_colab_guard.lab): its command line, and one real start-up
(no browser: the pages and the API answer, the guard is loaded even when a config file
disables the extension). The browser test is tests/browser/."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jupyter_colab_guard import lab

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="colab-guard")
    lab.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["lab", *argv])


def test_defaults_serve_samples_from_the_repository(tmp_path: Path) -> None:
    assert lab.default_notebook_dir(REPO) == REPO / "samples"
    assert lab.default_notebook_dir(tmp_path) == tmp_path
    args = parse()
    assert (args.port, args.policy, args.no_browser, args.notebook_dir) == (8888, None, False, None)
    assert args.func is lab.run


def test_server_argv() -> None:
    args = parse("--port", "9999", "--policy", "p.yaml", "--no-browser")
    argv = lab.server_argv(args, "tok", Path("/nb"), is_root=False)
    assert "--ServerApp.ip=127.0.0.1" in argv
    assert "--ServerApp.port=9999" in argv
    assert "--ServerApp.root_dir=/nb" in argv
    assert "--IdentityProvider.token=tok" in argv
    assert "--ServerApp.jpserver_extensions=jupyter_colab_guard=True" in argv
    assert "--ServerApp.reraise_server_extension_failures=True" in argv
    assert f"--ColabGuardApp.policy_path={Path('p.yaml').resolve()}" in argv
    assert "--ServerApp.open_browser=False" in argv
    assert "--ServerApp.allow_root=True" not in argv
    assert "--ServerApp.allow_root=True" in lab.server_argv(args, "t", Path("/nb"), True)


def test_options_after_double_dash_replace_ours() -> None:
    args = parse("--", "--IdentityProvider.token=mine", "--ServerApp.terminals_enabled=True")
    argv = lab.server_argv(args, "generated", Path("/nb"), is_root=False)
    assert [a for a in argv if a.startswith("--IdentityProvider.token")] == [
        "--IdentityProvider.token=mine"
    ]
    assert [a for a in argv if a.startswith("--ServerApp.terminals_enabled")] == [
        "--ServerApp.terminals_enabled=True"
    ]


def test_bad_policy_is_refused_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: 3\n")
    assert lab.run(parse("--policy", str(bad))) == 2
    assert lab.run(parse("--policy", str(tmp_path / "missing.yaml"))) == 2


@pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="needs jupyterlab")
@pytest.mark.timeout(120)
def test_starts_guarded_even_if_config_disables_the_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: ``--reset-strikes`` clears the owner's earlier strikes in the default store."""
    from jupyter_colab_guard.server.identity import default_owner
    from jupyter_colab_guard.store import StrikeStore
    from jupyter_colab_guard.store.store import StrikeEvent

    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    db = tmp_path / "data" / "colab_guard" / "strikes.sqlite"
    store = StrikeStore(f"sqlite:///{db}")
    store.open()
    earlier = StrikeEvent(user=default_owner(), kind="finding", strike=True, ts=time.time() - 60)
    store.record(earlier)
    assert len(store.strike_times(default_owner())) == 1
    store.close()
    config = tmp_path / "config"
    config.mkdir()
    disabled = {"ServerApp": {"jpserver_extensions": {"jupyter_colab_guard": False}}}
    (config / "jupyter_server_config.json").write_text(json.dumps(disabled))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "prohibited.ipynb").write_text("{}")
    log = tmp_path / "lab.log"
    cmd = [sys.executable, "-m", "jupyter_colab_guard.lab", "--no-browser", "--reset-strikes"]
    cmd += ["--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "Guarded JupyterLab is running" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        text = log.read_text(errors="replace")
        token = text.split("/lab?token=", 2)[-1].split()[0]
        assert len(token) >= 32
        assert f"Sample:      http://127.0.0.1:{port}/lab/tree/prohibited.ipynb?token=" in text
        assert f"Serving:     {tmp_path / 'samples'}" in text
        assert "Policy:      (shipped default)" in text
        assert f"Store:       sqlite:///{db}" in text
        assert f"the strikes of {default_owner()} were reset" in text
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/colab-guard/api/strikes/me",
            headers={"Authorization": f"token {token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["strikes"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
