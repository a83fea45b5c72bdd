"""Which processes the monitor watches and whose they are, from what the kernel says
about them (/proc, read as root): the uid, the JupyterHub user in the environment of
the process's outermost same-uid ancestor, the cgroup. Nothing else a process says
(argv, its name, its own later changes to its environment) decides its owner."""

from __future__ import annotations

import pwd
import time
from dataclasses import dataclass

from ..watcher import Owner, Proc
from ..watcher.procs import uid_of

HUB_USER_ENV = "JUPYTERHUB_USER"
MAX_HOPS = 64  # ancestors climbed at most
NAME_TTL = 60.0  # seconds a uid's login name is cached
MAX_USER = 255  # characters of a user name (the store's column)


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    try:  # "pid (comm) state ppid ...": comm may hold spaces and ')'
        return int(stat[stat.rfind(b")") + 2 :].split()[1])
    except (ValueError, IndexError):
        return None


def environ_value(pid: int, name: str) -> str | None:
    """One variable of a process's environment (its initial environment block)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for entry in data.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode("utf-8", "replace")
    return None


def cgroup_of(pid: int) -> str | None:
    """The process's cgroup (v2 path, else the first v1 hierarchy not at the root):
    on a Kubernetes node it names the pod and the container."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    paths = [line.split(":", 2) for line in lines if line.count(":") >= 2]
    for hierarchy, _, path in paths:
        if hierarchy == "0" and path not in ("", "/"):
            return path
    for _, _, path in paths:
        if path not in ("", "/"):
            return path
    return None


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who a process belongs to and how that was found."""

    user: str
    uid: int
    hub_pid: int | None  # the process whose environment named the hub user
    cgroup: str | None

    def describe(self) -> str:
        how = f"{HUB_USER_ENV} of pid {self.hub_pid}" if self.hub_pid else "login name"
        where = f", cgroup {self.cgroup}" if self.cgroup else ""
        return f"uid {self.uid}, user from {how}{where}"


class OwnerResolver:
    """The monitor's ``watched`` predicate and ``owner_of`` resolver."""

    def __init__(
        self,
        *,
        min_uid: int = 1000,
        max_uid: int = 60000,
        hub_only: bool = False,
        user_from: str = "env",
    ) -> None:
        if user_from not in ("env", "uid"):
            raise ValueError(f"user_from must be 'env' or 'uid': {user_from!r}")
        self.min_uid = min_uid
        self.max_uid = max_uid
        self.hub_only = hub_only  # only processes with a hub user in their environment
        # "env": JUPYTERHUB_USER, else the login name; "uid": the login name only (hosts
        # where every hub user has a uid of their own: the uid cannot be forged)
        self.user_from = user_from
        self._names: dict[int, tuple[float, str | None]] = {}

    def watched(self, pid: int) -> bool:
        uid = uid_of(pid)
        if uid is None or not self.min_uid <= uid <= self.max_uid:
            return False
        return not self.hub_only or self.hub_user(pid, uid) is not None

    def hub_user(self, pid: int, uid: int) -> tuple[str, int] | None:
        """(JUPYTERHUB_USER, the pid carrying it) of the outermost ancestor of the same
        uid that has it (the single-user server, or the container's first process,
        whose environment the spawner set); a child's own setting never overrides it."""
        found = None
        hops = 0
        while pid > 1 and hops < MAX_HOPS and uid_of(pid) == uid:
            value = environ_value(pid, HUB_USER_ENV)
            if value:
                found = (value, pid)
            parent = parent_of(pid)
            if parent is None:
                break
            pid, hops = parent, hops + 1
        return found

    def login_name(self, uid: int) -> str | None:
        hit = self._names.get(uid)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        try:
            name: str | None = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = None
        self._names[uid] = (time.monotonic() + NAME_TTL, name)
        return name

    def attribute(self, pid: int) -> Attribution | None:
        uid = uid_of(pid)
        if uid is None or not self.min_uid <= uid <= self.max_uid:
            return None
        hub = self.hub_user(pid, uid) if self.hub_only or self.user_from == "env" else None
        if hub is None and self.hub_only:
            return None
        named = hub if self.user_from == "env" else None
        user = named[0] if named else self.login_name(uid) or f"uid-{uid}"
        return Attribution(user[:MAX_USER], uid, named[1] if named else None, cgroup_of(pid))

    def owner_of(self, proc: Proc) -> Owner | None:
        found = self.attribute(proc.pid)
        return Owner(None, found.user, found.describe()) if found else None
