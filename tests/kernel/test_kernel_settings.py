"""Settings come from traitlets configuration; the default policy; loading paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernel_client import audit_events, execute, make_workdir, running_kernel

pytestmark = pytest.mark.analyzer


def test_default_policy_blocks_a_miner(tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    with running_kernel(work, policy=None) as kc:
        r = execute(
            kc, "open('miner-ran.txt', 'w').write('1')\n!./xmrig -o stratum+tcp://pool:3333"
        )
        assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError"
        assert not (work / "miner-ran.txt").exists()
        text = r.displays()[0]["text/plain"]
        assert "Mining cryptocurrency" in text and "line 2" in text
        assert "xmrig" not in text  # evidence hidden by default
        assert execute(kc, "print(sum(range(10)))").stream() == "45\n"
    assert any(e.get("category") == "crypto_mining" for e in audit_events(work))


def test_operator_settings_shape_the_warning(tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    options = [
        "--KernelGuard.service_name=Acme <Cloud>",
        "--KernelGuard.message=Stop & think: {service} rules apply.",
        "--KernelGuard.faq_url=https://acme.example/faq?a=1&b=2",
        "--KernelGuard.appeal_url=https://acme.example/appeal",
        "--KernelGuard.show_evidence=True",
        "--KernelGuard.warn_default_headless=run",
    ]
    with running_kernel(work, options=options) as kc:
        r = execute(kc, "!./forbidden-tool --shown")
        assert r.status == "error"
        shown = r.displays()[0]
        html, text = shown["text/html"], shown["text/plain"]
        assert "Stop &amp; think: Acme &lt;Cloud&gt; rules apply." in html
        assert "<Cloud>" not in html
        assert "Stop & think: Acme <Cloud> rules apply." in text
        assert 'href="https://acme.example/faq?a=1&amp;b=2"' in html
        assert "https://acme.example/appeal" in html and "https://acme.example/appeal" in text
        assert "forbidden-tool --shown" in text  # show_evidence
        headless = execute(kc, "y = 'WARN-ME'\nprint('ran headless')")
        assert headless.status == "ok" and "ran headless" in headless.stream()
    consent = [e for e in audit_events(work) if e["kind"] == "consent"]
    assert [e["choice"] for e in consent] == ["run"]


@pytest.mark.parametrize("fail_closed", [True, False])
def test_broken_policy(tmp_path: Path, fail_closed: bool) -> None:
    work = make_workdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: [not, a, name]\nrules: 7\n")
    options = [f"--KernelGuard.fail_closed={fail_closed}"]
    with running_kernel(work, policy=str(bad), options=options) as kc:
        r = execute(kc, "open('ran.txt', 'w').write('1')")
    assert (work / "ran.txt").exists() is not fail_closed
    if fail_closed:
        assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError"
    events = [e for e in audit_events(work) if e["rule"] == "guard.unavailable"]
    assert [e["action"] for e in events] == ["block" if fail_closed else "log"]


def test_load_ext_and_default_audit_log(tmp_path: Path) -> None:
    work = make_workdir(tmp_path / "work")
    data = tmp_path / "data"
    env = {"JUPYTER_DATA_DIR": str(data)}
    with running_kernel(work, ext=False, audit_log=False, env=env) as kc:
        before = execute(kc, "x = 'BLOCK-ME'")
        assert before.status == "ok"  # not guarded yet
        assert execute(kc, "%load_ext jupyter_colab_guard").status == "ok"
        after = execute(kc, "x = 'BLOCK-ME'")
        assert after.status == "error" and after.reply["ename"] == "ProhibitedCodeError"
    log = data / "colab_guard" / "audit.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["rule"] for e in events if e["kind"] == "finding"] == ["test-block-string"]


def test_allow_unload(tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    with running_kernel(work, options=["--KernelGuard.allow_unload=True"]) as kc:
        assert execute(kc, "x = 'BLOCK-ME'").status == "error"
        assert execute(kc, "%unload_ext jupyter_colab_guard").status == "ok"
        assert execute(kc, "x = 'BLOCK-ME'").status == "ok"
        assert execute(kc, "print(len(get_ipython().input_transformers_post))").stream() == "0\n"
    details = [e["detail"] for e in audit_events(work) if e["kind"] == "tamper"]
    assert details == ["%unload_ext allowed by KernelGuard.allow_unload"]


def test_a_guard_that_cannot_start_blocks_every_cell(tmp_path: Path) -> None:
    """An invalid setting makes installation fail: fail closed, nothing runs unchecked."""
    work = make_workdir(tmp_path)
    with running_kernel(work, options=["--KernelGuard.warn_default_headless=maybe"]) as kc:
        r = execute(kc, "open('ran.txt', 'w').write('1')")
        assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError"
        assert "could not start" in r.reply["evalue"]
        assert not (work / "ran.txt").exists()
