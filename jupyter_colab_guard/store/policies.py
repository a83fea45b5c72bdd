"""Published policy versions in the shared store (table ``colab_guard_policies``).

Every publish adds a row with the next version number; rows are never changed or
deleted, so the table is the history (who, when, why). Servers in store mode poll
``latest_number`` (one indexed ``max``) and read a document only when it changed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from ..policy import Policy, PolicyError, Problem
from ..policy.document import parse_document
from . import schema as S

# pg_advisory_xact_lock key of a publish ("cgpolicy")
PUBLISH_LOCK = 0x6367706F6C696379
MAX_DOCUMENT = 4 * 1024 * 1024  # characters


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PolicyVersion:
    version: int
    document: str
    sha256: str
    published_by: str
    published_at: float
    comment: str | None = None

    @property
    def policy_version(self) -> str:
        """The content hash the policy gets when loaded (``Policy.version``)."""
        return self.sha256[:16]

    def summary(self) -> dict[str, Any]:
        """Everything but the document (for listings and JSON)."""
        out = {k: v for k, v in asdict(self).items() if k != "document"}
        out["policy_version"] = self.policy_version
        out["time"] = datetime.fromtimestamp(self.published_at, UTC).isoformat()
        return out


def _version(row: Any) -> PolicyVersion:
    return PolicyVersion(**dict(row._mapping))


class PolicyVersions:
    """Publishing and reading policy versions through a store's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self, document: str, by: str, comment: str | None = None) -> PolicyVersion:
        """Validate ``document`` and store it as the next version. Raises PolicyError
        (nothing stored) when it is not a valid policy."""
        if len(document) > MAX_DOCUMENT:
            raise ValueError(f"the policy document is larger than {MAX_DOCUMENT} characters")
        parse_document(document, "<published policy>")
        if not by or len(by) > 255:
            raise ValueError("the publisher's name must have 1 to 255 characters")
        digest = sha256(document)
        last: Exception | None = None
        for _ in range(5):
            try:
                return self._insert(document, digest, by, comment)
            except IntegrityError as err:  # another publish took the number: next one
                last = err
        assert last is not None
        raise last

    def _insert(self, document: str, digest: str, by: str, comment: str | None) -> PolicyVersion:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PUBLISH_LOCK})
            top = conn.execute(select(func.max(S.policies.c.version))).scalar()
            row = PolicyVersion(
                version=int(top or 0) + 1,
                document=document,
                sha256=digest,
                published_by=by,
                published_at=time.time(),
                comment=comment or None,
            )
            conn.execute(insert(S.policies).values(**asdict(row)))
        return row

    def latest_number(self) -> int | None:
        """The newest version number (None: nothing published). The servers' poll."""
        with self.engine.connect() as conn:
            top = conn.execute(select(func.max(S.policies.c.version))).scalar()
        return int(top) if top is not None else None

    def get(self, version: int | None = None) -> PolicyVersion | None:
        """One version (None: the newest)."""
        q = select(S.policies)
        if version is None:
            q = q.order_by(S.policies.c.version.desc()).limit(1)
        else:
            q = q.where(S.policies.c.version == version)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return _version(row) if row is not None else None

    def history(self, limit: int = 100) -> list[PolicyVersion]:
        """The newest ``limit`` versions, newest first."""
        q = select(S.policies).order_by(S.policies.c.version.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_version(r) for r in conn.execute(q)]

    @staticmethod
    def load(row: PolicyVersion) -> Policy:
        """The policy of a stored version; raises PolicyError when the row does not hold
        a valid policy, or one whose text does not match its recorded hash."""
        name = f"store version {row.version}"
        if sha256(row.document) != row.sha256:
            raise PolicyError([Problem(name, 0, "", "the document does not match its sha256")])
        return parse_document(row.document, name)
