"""Other doors: magic bodies, magic aliases, shell aliases, %run, automagic."""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from kernel_client import audit_events, execute

pytestmark = pytest.mark.analyzer

PAYLOAD = "import os\nos.system('./forbidden-tool from-file')\n"


def assert_blocked(
    kc: BlockingKernelClient, code: str, side_effect: Path, workdir: Path | None = None
) -> None:
    """Refused; with ``workdir``: refused before it ran (a static finding, no runtime block)."""
    r = execute(kc, code)
    assert r.status == "error", (code, r.reply)
    assert r.reply["ename"] == "ProhibitedCodeError"
    assert not side_effect.exists()
    if workdir is not None:
        digest = hashlib.sha256(code.encode()).hexdigest()
        kinds = {e["kind"] for e in audit_events(workdir) if e["cell_hash"] == digest}
        assert kinds == {"finding"}, kinds


@pytest.mark.parametrize(
    "code",
    [
        "%%capture\n!./forbidden-tool captured",
        "%%time\n!./forbidden-tool timed",
        "%time !./forbidden-tool timed-line",
        "%%capture out\n%%bash\n./forbidden-tool nested",
        "%%bash\n./forbidden-tool in-bash",
    ],
    ids=["capture", "time-cell", "time-line", "capture-bash", "bash"],
)
def test_magic_bodies(
    kc: BlockingKernelClient, side_effect: Path, workdir: Path, code: str
) -> None:
    assert_blocked(kc, code, side_effect, workdir)


def test_alias_magic(kc: BlockingKernelClient, side_effect: Path, workdir: Path) -> None:
    assert execute(kc, "%alias_magic quiet capture").status == "ok"
    assert execute(kc, "%alias_magic sb bash").status == "ok"
    assert_blocked(kc, "%%quiet\n!./forbidden-tool via-alias", side_effect, workdir)
    assert_blocked(kc, "%%sb\n./forbidden-tool via-alias", side_effect, workdir)
    ok = execute(kc, "%%sb\necho alias-ok")
    assert ok.status == "ok" and "alias-ok" in ok.stream()


def test_shell_alias(kc: BlockingKernelClient, side_effect: Path, workdir: Path) -> None:
    assert execute(kc, "%alias runit %s").status == "ok"
    assert_blocked(kc, "%runit ./forbidden-tool via-shell-alias", side_effect, workdir)
    assert_blocked(kc, "runit ./forbidden-tool via-automagic", side_effect, workdir)
    ok = execute(kc, "%runit echo shell-alias-ok")
    assert ok.status == "ok" and "shell-alias-ok" in ok.stream()


def test_run_of_file_written_earlier(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path
) -> None:
    (workdir / "payload.py").write_text(PAYLOAD)  # written outside the kernel's view
    assert_blocked(kc, "%run payload.py", side_effect, workdir)
    assert_blocked(kc, "%alias_magic go run\n%go payload.py", side_effect, workdir)


def test_run_of_file_written_in_the_same_cell(kc: BlockingKernelClient, side_effect: Path) -> None:
    # rot13 hides the payload from static analysis; the %run wrapper reads the file
    hidden = codecs.encode(PAYLOAD, "rot13")
    code = (
        "import codecs\n"
        f"open('hidden.py', 'w').write(codecs.decode({hidden!r}, 'rot13'))\n"
        "%run hidden.py"
    )
    assert_blocked(kc, code, side_effect)


def test_run_of_benign_file(kc: BlockingKernelClient, workdir: Path) -> None:
    (workdir / "fine.py").write_text("print('fine file')\n")
    r = execute(kc, "%run fine.py")
    assert r.status == "ok" and "fine file" in r.stream()
