"""Tampering with the guard from inside the kernel is stopped or reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from kernel_client import audit_events, execute

pytestmark = pytest.mark.analyzer

BLOCKED = "!./forbidden-tool after-tamper"


def tamper_events(workdir: Path, since: int) -> list[dict]:
    return [e for e in audit_events(workdir)[since:] if e["kind"] == "tamper"]


def still_blocked(kc: BlockingKernelClient, side_effect: Path) -> None:
    r = execute(kc, BLOCKED)
    assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError", r.reply
    assert not side_effect.exists()


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("get_ipython().input_transformers_post.clear()", "tamper.transformer-removed"),
        (
            "get_ipython().input_transformer_manager.cleanup_transforms.pop(0)",
            "tamper.transformer-removed",
        ),
        (
            "k = get_ipython().kernel\nk.do_execute = type(k).do_execute.__get__(k)",
            "tamper.function-replaced",
        ),
        ("del get_ipython().user_expressions", "tamper.function-replaced"),
        ("get_ipython().transform_cell = lambda raw: raw", "tamper.function-replaced"),
        (
            "import jupyter_colab_guard.kernel.hook as h\nh.check_cell = lambda *a, **k: None",
            "tamper.function-replaced",
        ),
        (
            "import jupyter_colab_guard.kernel.guard as g\ng.Guard.enforce = lambda *a, **k: None",
            "tamper.function-replaced",
        ),
        (
            "from jupyter_colab_guard.kernel.extension import guard_of\n"
            "guard_of(get_ipython()).armed = False",
            "tamper.settings-changed",
        ),
        (
            "from jupyter_colab_guard.kernel.extension import guard_of\n"
            "guard_of(get_ipython()).settings.fail_closed = False",
            "tamper.settings-changed",
        ),
        ("%unload_ext jupyter_colab_guard", "tamper.unload"),
        (
            "import importlib, jupyter_colab_guard.kernel.hook as h\nimportlib.reload(h)",
            "tamper.function-replaced",
        ),
    ],
    ids=[
        "clear-post",
        "pop-cleanup",
        "restore-do-execute",
        "del-user-expressions",
        "override-transform-cell",
        "replace-module-function",
        "replace-method",
        "disarm",
        "change-setting",
        "unload-ext",
        "reload-module",
    ],
)
def test_tamper_is_repaired_and_reported(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path, code: str, rule: str
) -> None:
    since = len(audit_events(workdir))
    execute(kc, code)
    still_blocked(kc, side_effect)
    rules = [e["rule"] for e in tamper_events(workdir, since)]
    assert rule in rules, rules


def test_code_after_clearing_in_the_same_cell_is_stopped(
    kc: BlockingKernelClient, workdir: Path
) -> None:
    (workdir / "inner_cell.txt").write_text(
        "x = 'BLOCK-ME'\nopen('inner-ran.txt', 'w').write('1')\n"
    )
    since = len(audit_events(workdir))
    code = (
        "ip = get_ipython()\nip.input_transformers_post.clear()\n"
        "ip.run_cell(open('inner_cell.txt').read())\nopen('outer-ran.txt', 'w').write('1')"
    )
    execute(kc, code)
    assert not (workdir / "inner-ran.txt").exists()
    assert not (workdir / "outer-ran.txt").exists()
    assert [e for e in tamper_events(workdir, since) if e["action"] == "block"]


def test_replacing_function_code_is_refused(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path
) -> None:
    since = len(audit_events(workdir))
    r = execute(
        kc,
        "import jupyter_colab_guard.kernel.hook as h\n"
        "h.check_cell.__code__ = (lambda *a, **k: None).__code__",
    )
    assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError"
    assert any(e["action"] == "block" for e in tamper_events(workdir, since))
    still_blocked(kc, side_effect)


def test_load_ext_again_keeps_one_guard(kc: BlockingKernelClient, side_effect: Path) -> None:
    assert execute(kc, "%reload_ext jupyter_colab_guard").status == "ok"
    assert execute(kc, "%load_ext jupyter_colab_guard").status == "ok"
    r = execute(kc, "print(len(get_ipython().input_transformers_post))")
    assert r.stream().strip() == "1"
    still_blocked(kc, side_effect)
