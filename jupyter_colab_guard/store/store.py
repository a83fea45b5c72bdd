"""The strike store: one SQLAlchemy code path for SQLite and PostgreSQL.

Durability rules:
- ``record`` commits before it returns; callers show the warning only afterwards.
- SQLite runs in WAL mode with ``synchronous=FULL`` by default: a commit survives a
  killed process and a power loss. Strikes are rare, so the extra fsync costs nothing
  noticeable. ``NORMAL`` is allowed (survives a killed process, may lose the last
  commits on power loss).
- When the database cannot be written, the event goes to a spool file (JSON lines,
  fsynced) and an in-memory queue; ``flush_pending`` retries it later. Events carry a
  unique ``uid`` so a replay never inserts one twice. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    create_engine,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from . import schema as S

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key of schema set-up ("cgschema")
MIGRATE_LOCK = 0x6367736368656D61


class StoreError(Exception):
    """The store cannot be opened (e.g. its schema is newer than this code)."""


@dataclass
class StrikeEvent:
    """One recorded event. ``strike`` says whether it counts for escalation."""

    user: str
    kind: str
    source: str = "server"
    kernel_id: str | None = None
    path: str | None = None
    category: str | None = None
    rule: str | None = None
    action: str | None = None
    severity: str | None = None
    message: str | None = None
    evidence: str | None = None
    cell_hash: str | None = None
    cell_text: str | None = None
    detail: str | None = None
    strike: bool = False
    level: str | None = None
    ts: float = field(default_factory=time.time)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


def _insert_ignore(backend: str) -> Any:
    """``INSERT ... ON CONFLICT (uid) DO NOTHING`` for the dialects that have it."""
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(S.events).on_conflict_do_nothing(index_elements=["uid"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(S.events).on_conflict_do_nothing(index_elements=["uid"])


def _sqlite_pragmas(synchronous: str) -> Callable[..., None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    return on_connect


class StrikeStore:
    """Durable store of strike events, user resets, exceptions and appeals."""

    def __init__(
        self,
        url: str,
        *,
        spool_path: str | os.PathLike[str] | None = None,
        sqlite_synchronous: str = "FULL",
        on_error: Callable[[str, Exception, int], None] | None = None,
    ) -> None:
        self.url = url
        self.spool_path = Path(spool_path) if spool_path else None
        self.sqlite_synchronous = sqlite_synchronous.upper()
        if self.sqlite_synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(
                f"sqlite_synchronous must be FULL, NORMAL or EXTRA: {sqlite_synchronous}"
            )
        self.on_error = on_error
        self._pending: list[StrikeEvent] = []
        self._lock = threading.RLock()
        self.ready = False  # schema checked / created (open() succeeded)
        self.engine: Engine = self._create_engine()

    # -- setup -------------------------------------------------------------------

    def _create_engine(self) -> Engine:
        url = make_url(self.url)
        kwargs: dict[str, Any] = {"future": True}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
            if url.get_backend_name() == "postgresql":
                # an unreachable server must not hold up the server's event loop for long
                kwargs["connect_args"] = {"connect_timeout": 5}
        engine = create_engine(url, **kwargs)
        if url.get_backend_name() == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas(self.sqlite_synchronous))
        return engine

    def open(self, *, tolerate_down: bool = False) -> bool:
        """Create or migrate the schema, then replay the spool. True when open.

        ``tolerate_down``: a database that cannot be reached (or whose schema set-up
        fails) is not fatal: the store starts "down", events are spooled and
        ``flush_pending`` retries the set-up. A schema newer than the code always is.
        """
        self._load_spool()
        try:
            self.migrate()
        except StoreError:
            raise
        except SQLAlchemyError as err:
            if not tolerate_down:
                raise
            log.error("colab-guard: the store cannot be opened, retrying later: %s", err)
            if self.on_error:
                self.on_error("open", err, len(self._pending))
            return False
        self.ready = True
        self.flush_pending()
        return True

    def migrate(self) -> None:
        """Create or upgrade the schema. Safe when several servers start at once on a new
        database: PostgreSQL serialises it with an advisory lock, and a lost race on any
        backend ("already exists") is retried and then finds the schema in place."""
        last: Exception | None = None
        for attempt in range(5):
            try:
                self._migrate_once()
                return
            except StoreError:
                raise
            except (IntegrityError, ProgrammingError, OperationalError) as err:
                raced = any(
                    m in str(err)
                    for m in ("already exists", "database is locked", "duplicate column")
                )
                if not isinstance(err, IntegrityError) and not raced:
                    raise  # unreachable database etc.: no point in retrying here
                # another process created a table or the version row first
                last = err
                log.warning("colab-guard: schema set-up raced or failed (%s), retrying", err)
                time.sleep(0.2 * (attempt + 1))
        assert last is not None
        raise last

    def _migrate_once(self) -> None:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # held until the transaction ends; PUBLIC may call it (per-user roles too)
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK})
            S.metadata.create_all(conn, checkfirst=True)
            version = conn.execute(select(func.max(S.schema_version.c.version))).scalar()
            if version is None:
                conn.execute(
                    insert(S.schema_version).values(
                        version=S.SCHEMA_VERSION, applied_at=time.time()
                    )
                )
                return
            if version > S.SCHEMA_VERSION:
                raise StoreError(
                    f"store schema version {version} is newer than this code "
                    f"({S.SCHEMA_VERSION}); upgrade jupyter-colab-guard"
                )
            for target in range(version + 1, S.SCHEMA_VERSION + 1):
                MIGRATIONS[target](conn)
                conn.execute(
                    insert(S.schema_version).values(version=target, applied_at=time.time())
                )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(S.schema_version.c.version))).scalar())

    def close(self) -> None:
        self.engine.dispose()

    # -- writing events ------------------------------------------------------------

    def record(self, ev: StrikeEvent) -> bool:
        """Commit one event. True: in the database; False: spooled for a retry."""
        return self.record_many([ev])

    def record_many(self, evs: list[StrikeEvent]) -> bool:
        """Commit events in one transaction (all or none). True: in the database;
        False: all spooled for a retry."""
        if not evs:
            return True
        with self._lock:
            try:
                self._insert(evs)
                return True
            except SQLAlchemyError as err:
                for ev in evs:
                    self._spool(ev)
                log.error("colab-guard store write failed, %d event(s) spooled: %s", len(evs), err)
                if self.on_error:
                    self.on_error("record", err, len(self._pending))
                return False

    def _insert(self, evs: Iterable[StrikeEvent]) -> None:
        """Insert events, skipping uids already stored. Idempotent even when several
        processes replay the same events at once (``ON CONFLICT DO NOTHING``)."""
        backend = self.engine.dialect.name
        with self.engine.begin() as conn:
            for ev in evs:
                if backend in ("postgresql", "sqlite"):
                    conn.execute(_insert_ignore(backend).values(**ev.to_row()))
                    continue
                exists = conn.execute(select(S.events.c.id).where(S.events.c.uid == ev.uid)).first()
                if not exists:
                    conn.execute(insert(S.events).values(**ev.to_row()))

    def _spool(self, ev: StrikeEvent) -> None:
        self._pending.append(ev)
        if self.spool_path is None:
            return
        try:
            self.spool_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.spool_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(ev.to_row()) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:  # still held in memory; say so loudly
            log.critical("colab-guard spool write failed (event kept in memory): %s", err)

    def _load_spool(self) -> None:
        if not self.spool_path or not self.spool_path.exists():
            return
        known = {e.uid for e in self._pending}
        for line in self.spool_path.read_text(encoding="utf-8").splitlines():
            try:
                ev = StrikeEvent(**json.loads(line))
            except (ValueError, TypeError) as err:
                log.error("colab-guard: unreadable spool line skipped: %s", err)
                continue
            if ev.uid not in known:
                self._pending.append(ev)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush_pending(self) -> int:
        """Retry spooled events; return how many are still pending."""
        with self._lock:
            if not self.ready:
                try:
                    self.migrate()
                    self.ready = True
                except StoreError:
                    raise
                except SQLAlchemyError as err:
                    log.error("colab-guard store still cannot be opened: %s", err)
                    if self.on_error:
                        self.on_error("open", err, len(self._pending))
                    return self.pending
            if not self._pending:
                return 0
            try:
                self._insert(self._pending)
            except SQLAlchemyError as err:
                log.error("colab-guard store retry failed (%d pending): %s", self.pending, err)
                if self.on_error:
                    self.on_error("retry", err, len(self._pending))
                return self.pending
            self._pending.clear()
            if self.spool_path and self.spool_path.exists():
                self.spool_path.unlink()
            return 0

    # -- reading events ------------------------------------------------------------

    def reset_at(self, user: str) -> float:
        with self.engine.connect() as conn:
            value = conn.execute(select(S.users.c.reset_at).where(S.users.c.user == user)).scalar()
        return float(value or 0.0)

    def strike_times(self, user: str, since: float = 0.0) -> list[float]:
        """Times of strikes of a user after ``since`` and after the user's last reset."""
        start = max(since, self.reset_at(user))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(S.events.c.ts)
                .where(
                    S.events.c.user == user,
                    S.events.c.strike.is_(True),
                    S.events.c.voided_at.is_(None),  # a strike an admin removed
                    S.events.c.ts > start,
                )
                .order_by(S.events.c.ts)
            )
            times = [float(r.ts) for r in rows]
        # spooled strikes count too: the user must not profit from a broken database
        times += [e.ts for e in self._pending if e.user == user and e.strike and e.ts > start]
        return sorted(times)

    def events(self, user: str, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(S.events)
                .where(S.events.c.user == user)
                .order_by(S.events.c.ts.desc(), S.events.c.id.desc())
                .limit(limit)
            )
            return [_row(r) for r in rows]

    def get_event(self, event_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(S.events).where(S.events.c.id == event_id)).first()
            return _row(r) if r else None

    def seen_recently(self, kernel_id: str, cell_hash: str, rule: str | None, since: float) -> bool:
        """Whether the server already recorded this finding (dedupe of kernel reports).
        Spooled events count too (the database may be down)."""
        for e in list(self._pending):
            if (
                e.kernel_id == kernel_id
                and e.cell_hash == cell_hash
                and e.source == "server"
                and e.ts >= since
                and (not rule or e.rule == rule)
            ):
                return True
        with self.engine.connect() as conn:
            q = select(S.events.c.id).where(
                S.events.c.kernel_id == kernel_id,
                S.events.c.cell_hash == cell_hash,
                S.events.c.source == "server",
                S.events.c.ts >= since,
            )
            if rule:
                q = q.where(S.events.c.rule == rule)
            return conn.execute(q.limit(1)).first() is not None

    @staticmethod
    def _user_filter(q: Any, search: str | None) -> Any:
        if search:
            q = q.where(func.lower(S.events.c.user).contains(search.lower(), autoescape=True))
        return q

    def count_users(self, search: str | None = None) -> int:
        """How many users have events (whose name contains ``search``)."""
        q = self._user_filter(select(func.count(func.distinct(S.events.c.user))), search)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    def users(
        self, search: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Users with events, by name (whose name contains ``search``, case-insensitive;
        a page of ``limit`` from ``offset``): total events and strikes since the last
        reset (voided strikes do not count)."""
        e, u = S.events, S.users
        since_reset = or_(u.c.reset_at.is_(None), e.c.ts > u.c.reset_at)
        counts = and_(e.c.strike.is_(True), e.c.voided_at.is_(None), since_reset)
        q = (
            select(
                e.c.user,
                func.count().label("events"),
                func.sum(func.cast(counts, S.Integer)).label("strikes"),
                func.max(e.c.ts).label("last_ts"),
                func.max(u.c.reset_at).label("reset_at"),
            )
            .select_from(e.outerjoin(u, u.c.user == e.c.user))
            .group_by(e.c.user)
            .order_by(e.c.user)
        )
        q = self._user_filter(q, search)
        if limit is not None:
            q = q.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [{**_row(r), "strikes": int(r.strikes or 0)} for r in conn.execute(q)]

    # -- admin actions ---------------------------------------------------------------

    def reset(self, user: str, by: str, ts: float | None = None) -> None:
        ts = time.time() if ts is None else ts
        with self.engine.begin() as conn:
            done = conn.execute(
                update(S.users).where(S.users.c.user == user).values(reset_at=ts, reset_by=by)
            ).rowcount
            if not done:
                conn.execute(insert(S.users).values(user=user, reset_at=ts, reset_by=by))

    def grant_exception(
        self,
        user: str,
        by: str,
        category: str | None,
        rule: str | None,
        reason: str = "",
        expires_at: float | None = None,
    ) -> int:
        """``expires_at``: the exception stops applying then (None: until revoked)."""
        if not (category or rule):
            raise ValueError("an exception needs a category or a rule")
        with self.engine.begin() as conn:
            res = conn.execute(
                insert(S.exceptions).values(
                    user=user,
                    category=category,
                    rule=rule,
                    reason=reason,
                    granted_by=by,
                    granted_at=time.time(),
                    expires_at=expires_at,
                )
            )
            return int(res.inserted_primary_key[0])

    def revoke_exception(self, exception_id: int, by: str) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(S.exceptions)
                    .where(S.exceptions.c.id == exception_id, S.exceptions.c.revoked_at.is_(None))
                    .values(revoked_at=time.time(), revoked_by=by)
                ).rowcount
            )

    def exceptions(
        self, user: str | None = None, active: bool = True, now: float | None = None
    ) -> list[dict[str, Any]]:
        """Exceptions by id; ``active``: neither revoked nor expired (at ``now``)."""
        x = S.exceptions
        q = select(x).order_by(x.c.id)
        if user is not None:
            q = q.where(x.c.user == user)
        if active:
            now = time.time() if now is None else now
            unexpired = or_(x.c.expires_at.is_(None), x.c.expires_at > now)
            q = q.where(x.c.revoked_at.is_(None), unexpired)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def add_appeal(self, user: str, message: str, event_id: int | None = None) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(
                insert(S.appeals).values(
                    ts=time.time(), user=user, message=message, event_id=event_id, status="open"
                )
            )
            return int(res.inserted_primary_key[0])

    def appeals(self, user: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Appeals, newest first (of ``user``, in ``status`` open/accepted/rejected)."""
        q = select(S.appeals).order_by(S.appeals.c.ts.desc(), S.appeals.c.id.desc())
        if user is not None:
            q = q.where(S.appeals.c.user == user)
        if status is not None:
            q = q.where(S.appeals.c.status == status)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def get_appeal(self, appeal_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(S.appeals).where(S.appeals.c.id == appeal_id)).first()
            return _row(r) if r else None

    def answer_appeal(
        self, appeal_id: int, by: str, accept: bool, note: str = ""
    ) -> dict[str, Any] | None:
        """Accept or reject an open appeal, in one transaction. Accepting voids the
        appealed strike (the event stays, marked, and stops counting): the appeal's
        event when it names a strike of the user, else the user's latest counting strike
        made before the appeal. Returns the answered appeal with ``voided_event`` (an
        event id or None); None when the appeal is unknown or already answered."""
        a, e = S.appeals, S.events
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(select(a).where(a.c.id == appeal_id)).first()
            if row is None:
                return None
            done = conn.execute(
                update(a)
                .where(a.c.id == appeal_id, a.c.status == "open")
                .values(
                    status="accepted" if accept else "rejected",
                    answered_by=by,
                    answered_at=now,
                    note=note,
                )
            ).rowcount
            if not done:  # answered meanwhile (by another admin)
                return None
            voided = None
            if accept:
                counting = and_(e.c.user == row.user, e.c.strike.is_(True), e.c.voided_at.is_(None))
                q = select(e.c.id).where(counting)
                if row.event_id is not None:
                    q = q.where(e.c.id == row.event_id)
                else:
                    q = q.where(e.c.ts <= row.ts).order_by(e.c.ts.desc(), e.c.id.desc())
                voided = conn.execute(q.limit(1)).scalar()
                if voided is not None:
                    conn.execute(
                        update(e).where(e.c.id == voided).values(voided_by=by, voided_at=now)
                    )
            out = _row(conn.execute(select(a).where(a.c.id == appeal_id)).first())
        return {**out, "voided_event": voided}


def _add_columns(version: int) -> Callable[[Any], None]:
    """A migration that adds the columns ``schema.ADDED_COLUMNS[version]`` lists (all
    nullable, so existing rows stay valid); a column already there is left alone."""

    def migrate(conn: Any) -> None:
        quote = conn.dialect.identifier_preparer.quote
        for table, name in S.ADDED_COLUMNS[version]:
            have = {c["name"] for c in inspect(conn).get_columns(table.name)}
            if name in have:
                continue
            col_type = table.c[name].type.compile(dialect=conn.dialect)
            conn.execute(
                text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(name)} {col_type}")
            )

    return migrate


# target version -> function(conn) that upgrades from target - 1
MIGRATIONS: dict[int, Callable[[Any], None]] = {2: _add_columns(2)}
