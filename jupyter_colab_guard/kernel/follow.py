"""Following the server's policy: before each cell, the version the server marked.

The server marks every execute_request it lets through with the version of its policy
in force (metadata ``colab_guard_policy``, server/policymark.py; a client's own value is
replaced). When that differs from the version this guard enforces, the guard reads
``policy-<version>.yaml`` from ``KernelGuard.policy_dir`` (the server's private snapshot
folder) and puts it in force before the cell is checked. The file's hash must be the
version: a file of other content under that name is refused, and the name can only be
one the server marked. A version that cannot be loaded leaves the policy in force (the
server's check already applied the new one) and is reported once.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from typing import Any

FIELD = "colab_guard_policy"
VERSION = re.compile(r"^[0-9a-f]{16}$")


def marked_version(guard: Any) -> str | None:
    """The version the server marked on the request running now (None: no mark)."""
    kernel = guard.kernel
    if kernel is None:
        return None
    try:
        meta = kernel.get_parent("shell").get("metadata") or {}
    except Exception:
        return None
    value = meta.get(FIELD) if isinstance(meta, dict) else None
    return value if isinstance(value, str) and VERSION.match(value) else None


def read_version(folder: str, version: str) -> Any:
    """The policy of ``policy-<version>.yaml`` in ``folder``; raises ValueError, OSError
    or PolicyError when it is missing, of other content or not a valid policy."""
    from jupyter_colab_guard.policy import parse_policy

    path = os.path.join(folder, f"policy-{version}.yaml")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] != version:
        raise ValueError(f"{path} does not hold policy {version} (its hash differs)")
    policy = parse_policy(text, path)
    if policy.version != version:
        raise ValueError(f"{path} loads as policy {policy.version}, not {version}")
    return policy


def follow(guard: Any) -> bool:
    """Put the marked version in force if it differs; True when a new policy was put in
    force. Never raises."""
    want = marked_version(guard)
    folder = guard.settings.policy_dir
    if not want or not folder or want == guard.policy_version:
        return False
    if want in guard.refused_versions:
        return False
    try:
        policy = read_version(folder, want)
        guard.use_policy(policy)
    except Exception as err:
        guard.refused_versions.add(want)
        detail = f"policy {want} not put in force: {type(err).__name__}: {err}"
        print(f"colab-guard: {detail}; policy {guard.policy_version} stays", file=sys.stderr)
        guard.report_tamper("policy", detail)
        return False
    return True
