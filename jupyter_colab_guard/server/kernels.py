"""The kernels the guard knows: report tokens, the kernel-side guard's armed state and
the identity files kernels read (tier, groups, admin exceptions)."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .settings import GuardSettings
from .standing import UserStanding
from .users import UserResolver

log = logging.getLogger(__name__)


@dataclass
class KernelInfo:
    kernel_id: str
    user: str
    token_digest: str
    path: str | None = None
    started: float = field(default_factory=time.time)
    groups: tuple[str, ...] = ()
    # the kernel-side guard: expected (a Python kernel started with it), its "armed"
    # hello (time, policy version), and whether it was found missing
    expects_guard: bool = False
    armed_at: float | None = None
    armed_policy: str | None = None
    unarmed: bool = False
    identity_file: str | None = None
    language: str = "python"  # from the kernelspec the server launched (never the kernel's word)
    # report abuse limits: times of recent reports and of strikes taken from reports
    report_times: collections.deque[float] = field(default_factory=collections.deque)
    strike_times: collections.deque[float] = field(default_factory=collections.deque)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KernelRegistry:
    def __init__(
        self, users: UserResolver, standing: UserStanding, settings: GuardSettings
    ) -> None:
        self.users = users
        self.standing = standing
        self.settings = settings
        self._kernels: dict[str, KernelInfo] = {}
        self._tokens: dict[str, str] = {}  # sha256(token) -> kernel id
        self._lock = threading.Lock()

    # -- tokens ----------------------------------------------------------------------

    def register(
        self,
        kernel_id: str,
        user: str,
        groups: tuple[str, ...] = (),
        expects_guard: bool = False,
        language: str = "python",
    ) -> str:
        """Issue the report token of a kernel; returns the token (kept only hashed).
        A restart keeps the user and groups; the guard must announce itself again."""
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        with self._lock:
            old = self._kernels.get(kernel_id)
            if old:
                self._tokens.pop(old.token_digest, None)
            info = KernelInfo(
                kernel_id,
                user,
                digest,
                groups=groups,
                expects_guard=expects_guard,
                language=language,
            )
            if old:
                info.path = old.path
                info.strike_times = old.strike_times  # a restart does not reset the caps
                info.identity_file = old.identity_file
            self._kernels[kernel_id] = info
            self._tokens[digest] = kernel_id
        return token

    def get(self, kernel_id: str) -> KernelInfo | None:
        return self._kernels.get(kernel_id)

    def for_token(self, token: str) -> KernelInfo | None:
        digest = _digest(token)
        kid = self._tokens.get(digest)
        info = self._kernels.get(kid) if kid else None
        if info is None or not hmac.compare_digest(info.token_digest, digest):
            return None
        return info

    def forget(self, kernel_id: str) -> None:
        with self._lock:
            info = self._kernels.pop(kernel_id, None)
            if info:
                self._tokens.pop(info.token_digest, None)
                if info.identity_file:
                    try:
                        os.unlink(info.identity_file)
                    except OSError:
                        pass

    def kernels_of(self, user: str) -> list[str]:
        return [k.kernel_id for k in self._kernels.values() if k.user == user]

    # -- the kernel's identity file (tier, groups, admin exceptions) -------------------

    def identity(self, info: KernelInfo) -> dict[str, Any]:
        return {
            "user": info.user,
            "groups": list(info.groups),
            "tier": self.users.tier_of(info.user),
            "exceptions": [
                {
                    "category": x.get("category"),
                    "rule": x.get("rule"),
                    "expires_at": x.get("expires_at"),
                }
                for x in self.standing.admin_exceptions(info.user)
            ],
        }

    def write_identity(self, kernel_id: str) -> str | None:
        """Write (0600, atomically) what the kernel-side guard must know about its user:
        tier, groups and active admin exceptions. Returns the path (None: not written)."""
        info = self._kernels.get(kernel_id)
        snapshot_dir = self.settings.snapshot_dir
        if info is None or not snapshot_dir:
            return None
        path = os.path.join(snapshot_dir, f"kernel-{kernel_id}.json")
        try:
            os.makedirs(snapshot_dir, mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.identity(info), f)
            os.replace(tmp, path)
        except OSError as err:
            log.error("colab-guard: cannot write the identity file of %s: %s", kernel_id, err)
            return None
        info.identity_file = path
        return path

    def refresh_identities(self, user: str) -> None:
        """After an admin granted or revoked an exception: running kernels pick it up at
        their next cell."""
        self.standing.invalidate_exceptions(user)
        for kid in self.kernels_of(user):
            info = self._kernels.get(kid)
            if info is not None and info.identity_file:
                self.write_identity(kid)

    # -- the kernel-side guard's hello ---------------------------------------------

    def armed(self, info: KernelInfo, policy_version: str | None) -> None:
        info.armed_at = time.time()
        info.armed_policy = policy_version
        if info.unarmed:
            log.warning("colab-guard: kernel %s armed late", info.kernel_id)
        info.unarmed = False

    def check_armed(self, now: float | None = None) -> list[KernelInfo]:
        """Kernels whose guard did not announce itself within ``arm_timeout``: logged
        and recorded once (non-strike event); returns the newly found ones."""
        now = time.time() if now is None else now
        timeout = self.settings.arm_timeout
        found = []
        for info in list(self._kernels.values()):
            if (
                info.expects_guard
                and info.armed_at is None
                and not info.unarmed
                and now - info.started > timeout
            ):
                info.unarmed = True
                found.append(info)
                log.error(
                    "colab-guard: the kernel-side guard of kernel %s (user %s) did not arm "
                    "within %.0f s; the kernel runs without it (the server check still "
                    "applies%s)",
                    info.kernel_id,
                    info.user,
                    timeout,
                    "; it is shut down" if self.settings.require_kernel_guard else "",
                )
        return found

    async def wait_armed(self, kernel_id: str) -> bool:
        """With ``require_kernel_guard``: whether the kernel's guard armed (waits until
        ``arm_timeout`` after the kernel's start at most)."""
        info = self._kernels.get(kernel_id)
        if info is None or not info.expects_guard:
            return True
        while info.armed_at is None and not info.unarmed:
            if time.time() - info.started > self.settings.arm_timeout:
                return False  # the server's timer records it and shuts the kernel down
            await asyncio.sleep(0.05)
        return info.armed_at is not None
