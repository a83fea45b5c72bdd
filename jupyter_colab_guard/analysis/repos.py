"""The repository a URL names: `https://github.com/owner/NAME(.git)`, its release downloads,
raw files, archives, `git@github.com:owner/NAME`, `git+https://...` (pip)."""

from __future__ import annotations

import re

_HOSTS = (
    r"github\.com|gitlab\.com|bitbucket\.org|codeberg\.org|gitee\.com|"
    r"raw\.githubusercontent\.com|codeload\.github\.com|api\.github\.com/repos"
)
_REPO_URL = re.compile(
    rf"^(?:git\+)?(?:[a-z][a-z0-9+.-]*://)?(?:[^@/\s]+@)?(?:www\.)?(?:{_HOSTS})[/:]"
    r"([\w.-]+)/([\w.-]+)",
    re.IGNORECASE,
)


def repository(url: str) -> tuple[str, str] | None:
    """(owner, name), lower-case and without `.git`; None when the URL names no repository."""
    match = _REPO_URL.match(url.strip())
    if match is None:
        return None
    owner, name = match.group(1).lower(), match.group(2).lower().removesuffix(".git")
    return (owner, name) if name and name not in (".", "..") else None
