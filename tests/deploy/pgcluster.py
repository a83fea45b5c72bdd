"""A throw-away PostgreSQL cluster for tests: initdb in a temp dir, loopback port only.

As root the cluster runs as the ``postgres`` OS user (PostgreSQL refuses root). The
superuser ``postgres`` has a password; TCP connections need one (scram-sha-256).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"


def pg_bindir() -> Path | None:
    """Directory of initdb/pg_ctl: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def missing_reason() -> str | None:
    """Why no cluster can be started here (None: it can)."""
    if pg_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: run .ci/setup-services.sh"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'psycopg[binary]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no 'postgres' OS user to run PostgreSQL as"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self) -> None:
        bindir = pg_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.base = Path(tempfile.mkdtemp(prefix="colab-guard-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self._user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.base.chmod(0o700)

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True, capture_output=True, timeout=timeout, cwd=self.base, **self._user,
        )  # fmt: skip

    def init(self) -> PgCluster:
        pwfile = self.base / "pw"
        pwfile.write_text(self.password)
        if self._user:
            os.chown(pwfile, self._user["user"], self._user["group"])
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.base}'\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
            )
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)

    # -- connections ------------------------------------------------------------------

    def url(self, db: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql+psycopg://{user}:{pw}@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "postgres", user: str = SUPERUSER, password: str | None = None):
        import psycopg

        pw = self.password if password is None else password
        return psycopg.connect(
            host="127.0.0.1", port=self.port, dbname=db, user=user, password=pw, autocommit=True
        )

    def execute(self, sql: str, db: str = "postgres") -> list[tuple[Any, ...]]:
        with self.connect(db) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def create_database(self, owner: str | None = None, owner_password: str = "") -> str:
        """A new empty database (optionally owned by a new CREATEROLE login role)."""
        name = "t_" + uuid.uuid4().hex[:12]
        if owner:
            self.execute(f"CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD '{owner_password}'")
            self.execute(f"CREATE DATABASE {name} OWNER {owner}")
            self.execute(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
            self.execute(f"GRANT CONNECT ON DATABASE {name} TO {owner}")
        else:
            self.execute(f"CREATE DATABASE {name}")
        return name


def wait_port_closed(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)


@contextmanager
def cluster_or_skip() -> Iterator[PgCluster]:
    """A running throw-away cluster, destroyed after; skips the test when PostgreSQL is
    not installed (the fixtures of tests/deploy and tests/monitor)."""
    import pytest

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = PgCluster().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
