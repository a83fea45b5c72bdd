"""The policy in force for the monitor: a policy file or folder, read by the same loader
as the servers' (``load_policy``), and reloaded when one of its files changes. A change
that does not load is refused and the policy in force stays."""

from __future__ import annotations

import logging
from pathlib import Path

from ..analysis import Analyzer
from ..policy import Policy, PolicyError, load_policy
from ..policy.folder import signature as folder_signature

log = logging.getLogger(__name__)

Signature = tuple[object, ...]


def signature(path: str) -> Signature:
    """What changes when the policy at ``path`` (a file, or a folder's YAML files) does
    (stat follows symlinks: a ConfigMap's swap of ..data is a change)."""
    return folder_signature(Path(path))


class PolicySource:
    def __init__(self, path: str | None) -> None:
        self.path = path  # None: the shipped default policy (never reloaded)
        self.policy: Policy | None = None
        self.analyzer: Analyzer | None = None
        self._sig: Signature | None = None

    def load(self) -> Policy:
        """The first load (raises PolicyError: the monitor does not start without one)."""
        self._sig = signature(self.path) if self.path else None
        self._set(load_policy(self.path))
        assert self.policy is not None
        return self.policy

    def poll(self) -> bool | None:
        """None: unchanged; True: a new policy in force; False: a change was refused."""
        if self.path is None:
            return None
        sig = signature(self.path)
        if sig == self._sig:
            return None
        self._sig = sig
        try:
            policy = load_policy(self.path)
        except PolicyError as err:
            log.error("colab-guard monitor: new policy refused, the one in force stays:\n%s", err)
            return False
        if self.policy is not None and policy.version == self.policy.version:
            return None
        self._set(policy)
        log.info(
            "colab-guard monitor: policy %s reloaded (version %s)", policy.path, policy.version
        )
        return True

    def _set(self, policy: Policy) -> None:
        self.analyzer = Analyzer(policy)  # built before it is put in force
        self.policy = policy
