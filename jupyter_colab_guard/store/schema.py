"""Tables of the strike store (SQLAlchemy Core, same for SQLite and PostgreSQL).

Times are stored as float seconds since the epoch (UTC): portable across dialects
and cheap to compare in window queries.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 2  # 2: appeal answers, exception expiry, voided events

metadata = MetaData()

schema_version = Table(
    "colab_guard_schema",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("applied_at", Float, nullable=False),
)

events = Table(
    "colab_guard_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # client-generated id: replaying the spool never inserts an event twice
    Column("uid", String(64), nullable=False, unique=True),
    Column("ts", Float, nullable=False),
    Column("user", String(255), nullable=False),
    Column("kernel_id", String(64)),
    Column("path", Text),
    Column("source", String(16), nullable=False),  # server | kernel
    Column("kind", String(32), nullable=False),  # finding, runtime_block, restricted, ...
    Column("category", String(128)),
    Column("rule", String(128)),
    Column("action", String(16)),
    Column("severity", String(16)),
    Column("message", Text),
    Column("evidence", Text),
    Column("cell_hash", String(64)),
    Column("cell_text", Text),
    Column("detail", Text),
    Column("strike", Boolean, nullable=False, default=False),
    Column("level", String(32)),
    # v2: an admin accepted an appeal of this strike: kept, but no longer counted
    Column("voided_by", String(255)),
    Column("voided_at", Float),
)
Index("ix_colab_guard_events_user_ts", events.c.user, events.c.ts)
Index("ix_colab_guard_events_dedupe", events.c.kernel_id, events.c.cell_hash)

users = Table(
    "colab_guard_users",
    metadata,
    Column("user", String(255), primary_key=True),
    Column("reset_at", Float),
    Column("reset_by", String(255)),
)

exceptions = Table(
    "colab_guard_exceptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user", String(255), nullable=False, index=True),
    Column("category", String(128)),
    Column("rule", String(128)),
    Column("reason", Text),
    Column("granted_by", String(255), nullable=False),
    Column("granted_at", Float, nullable=False),
    Column("revoked_by", String(255)),
    Column("revoked_at", Float),
    Column("expires_at", Float),  # v2: stops applying at this time (None: never)
)

appeals = Table(
    "colab_guard_appeals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("user", String(255), nullable=False, index=True),
    Column("event_id", Integer),
    Column("message", Text, nullable=False),
    Column("status", String(16), nullable=False, default="open"),  # open|accepted|rejected
    # v2: the admin's answer
    Column("answered_by", String(255)),
    Column("answered_at", Float),
    Column("note", Text),
)

# columns added by each schema version: version -> [(table, column)]
ADDED_COLUMNS: dict[int, list[tuple[Table, str]]] = {
    2: [
        (events, "voided_by"),
        (events, "voided_at"),
        (exceptions, "expires_at"),
        (appeals, "answered_by"),
        (appeals, "answered_at"),
        (appeals, "note"),
    ],
}

# published policies (``colab-guard policy publish``, the admin API): servers with
# ``policy_source = "store"`` put the newest in force. Rows are never changed; a
# rollback publishes an old document again as a new version.
policies = Table(
    "colab_guard_policies",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),  # 1, 2, 3, ...
    Column("document", Text, nullable=False),  # the policy as one YAML (or JSON) text
    Column("sha256", String(64), nullable=False),  # of the document's UTF-8 bytes
    Column("published_by", String(255), nullable=False),
    Column("published_at", Float, nullable=False),
    Column("comment", Text),
)
