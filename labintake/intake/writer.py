"""Group commit: one thread, one connection, many messages per transaction.

Connections hand their rows to :meth:`GroupCommitWriter.store` and await the result. The
writer thread takes everything that is waiting, inserts it in one transaction
(``INSERT ... ON CONFLICT DO NOTHING`` on the sender/control-id key), commits, and only then
resolves each waiter. While it commits, new rows queue up for the next transaction, so the
batch grows with the load and the asyncio loop never waits on the database.

A duplicate (same proven sender identity, sending application, facility and control id as
a stored row, or as an earlier row of the same batch, with the same content digest) inserts
nothing: its waiter gets the stored acknowledgement. A message under the same key with a
different content digest is a conflict: the row's ``conflict`` builder gives the row to keep
(its digest in ``conflict_digest``, so it does not collide with the original) and the
acknowledgement for it; the same conflicting content sent again is a duplicate of that row.
This holds across restarts and across several instances sharing a PostgreSQL database: the
unique constraint on the five key columns decides, whichever instance inserts first.

On a SQLite file `labintake serve` commits the batches to intake's journal, a file of its own
that the worker process moves into the database (:mod:`labintake.intake.journal`): an ACK then
waits for intake's own commits, not for the workers' transactions on the database.

When a batch fails, each of its rows is retried in its own transaction so one bad row
cannot take the others down; a row that still fails resolves with :class:`StorageError`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.dml import Insert, ReturningInsert

from labintake.errors import StorageError
from labintake.intake.journal import STORE_SCHEMA, IntakeJournal
from labintake.models.messages import InboundMessage
from labintake.models.tables import bind, insert_bound_returning, raw_rows, table_of

log = logging.getLogger("labintake.intake.writer")

# How long a batch waits for another writer to release a SQLite database before failing.
LOCK_WAIT_SECONDS = 10.0
# A locked database is tried again after 0.2 ms, then at most every this long: the workers
# let intake have the lock as soon as their transaction under way ends (see
# labintake.batching.yield_to_intake).
LOCK_RETRY_MAX_SECONDS = 0.0005
CHECKPOINT_INTERVAL_SECONDS = 1.0

TABLE = table_of(InboundMessage)
KEY_COLUMNS = (
    "sender_identity",
    "sending_application",
    "sending_facility",
    "control_id",
    "conflict_digest",
)
RETURNED = (*KEY_COLUMNS, "id")

Key = tuple[str, str, str, str, str]
# Given the original's id and acknowledgement: the conflict row's values and acknowledgement.
ConflictBuilder = Callable[[int, bytes], tuple[dict[str, Any], bytes]]


@dataclass(slots=True)
class PendingRow:
    """One message on its way to the inbound store, with the acknowledgement stored with it.

    Without a `conflict` builder, a later message under the same key is a duplicate whatever
    its content (the behaviour before content digests).
    """

    values: dict[str, Any]
    ack: bytes
    conflict: ConflictBuilder | None = None

    @property
    def key(self) -> Key:
        v = self.values
        return (
            v.get("sender_identity", ""),
            v["sending_application"],
            v["sending_facility"],
            v["control_id"],
            v.get("conflict_digest", ""),
        )

    @property
    def digest(self) -> str | None:
        value: str | None = self.values.get("content_digest")
        return value


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What the store holds for a message: our acknowledgement, or the original one.

    `conflict_of` is the original's id when the message reused its control id with other
    content (then `ack` is the conflict's acknowledgement and `duplicate` is False, or True
    when that same conflicting content had been stored already).
    """

    ack: bytes
    duplicate: bool
    message_id: int | None = None
    conflict_of: int | None = None


@dataclass(slots=True)
class _Waiter:
    row: PendingRow
    future: asyncio.Future[StoreResult]
    loop: asyncio.AbstractEventLoop
    outcome: StoreResult | BaseException | None = field(default=None)


def _insert_statement(engine: Engine) -> ReturningInsert[Any]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING key, id: the rows it returns were ours."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        insert: Insert = sqlite.insert(TABLE).on_conflict_do_nothing(
            index_elements=list(KEY_COLUMNS)
        )
    elif dialect == "postgresql":
        insert = postgresql.insert(TABLE).on_conflict_do_nothing(index_elements=list(KEY_COLUMNS))
    else:
        raise StorageError(f"database {dialect!r} is not supported for intake (SQLite, PostgreSQL)")
    return insert.returning(*(TABLE.c[name] for name in KEY_COLUMNS), TABLE.c.id)


@dataclass(frozen=True, slots=True)
class _Stored:
    """The row that holds a key: its acknowledgement, id and content digest."""

    ack: bytes
    message_id: int
    digest: str | None
    conflict_of: int | None
    fresh: bool = False  # inserted by this batch

    def result(self, ack: bytes) -> StoreResult:
        if self.fresh:
            return StoreResult(ack, False, self.message_id, self.conflict_of)
        return StoreResult(self.ack, True, self.message_id, self.conflict_of)


def _differs(row: PendingRow, stored: _Stored) -> bool:
    """Whether `row` says something else than the stored message under its key (unknown
    digests, from before digests were kept, count as the same)."""
    if row.conflict is None or row.digest is None or stored.digest is None:
        return False
    return row.digest != stored.digest


def _resolve(waiters: list[_Waiter]) -> None:
    """Runs in the waiters' event loop."""
    for waiter in waiters:
        if waiter.future.done():  # the connection went away meanwhile
            continue
        if isinstance(waiter.outcome, StoreResult):
            waiter.future.set_result(waiter.outcome)
        elif isinstance(waiter.outcome, BaseException):
            waiter.future.set_exception(waiter.outcome)
        else:  # pragma: no cover - every waiter gets an outcome; never leave one hanging
            waiter.future.set_exception(StorageError("the message was not written"))


class GroupCommitWriter:
    """Writes pending rows in batches from a dedicated thread; see the module docstring."""

    def __init__(
        self, engine: Engine, *, max_batch: int = 500, journal: IntakeJournal | None = None
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.journal = journal
        # Where the batches are committed: the journal's file, or the database.
        self._target = journal.engine if journal is not None else engine
        self._insert = _insert_statement(engine)
        quote = engine.dialect.identifier_preparer.quote
        self._stored_columns = ", ".join(
            quote(name) for name in (*KEY_COLUMNS, "ack", "id", "content_digest", "conflict_of_id")
        )
        self._queue: queue.SimpleQueue[_Waiter | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._connection: Connection | None = None
        self._closed = False
        self._sqlite = engine.dialect.name == "sqlite"
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_stop = threading.Event()
        self.batches = 0
        self.rows = 0
        self.last_commit_at = 0.0  # time.monotonic() of the last batch written
        self.busy_seconds = 0.0  # time spent writing batches (waits for the lock included)
        # Told (last_commit_at, busy_seconds) after each batch: the worker process watches it.
        self.on_commit: Callable[[float, float], None] | None = None
        # called with time.monotonic() when a commit finds SQLite's database locked
        self.on_locked: Callable[[float], None] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)
        self._thread.start()
        if self._sqlite:
            self._checkpoint_stop.clear()
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="intake-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything already queued, then stop the thread (blocking)."""
        self._closed = True
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        if self._checkpointer is not None:
            self._checkpoint_stop.set()
            self._checkpointer.join(timeout)
            self._checkpointer = None

    # -- the asyncio side ---------------------------------------------------------------
    async def store(self, row: PendingRow) -> StoreResult:
        """Queue `row` and wait until it is committed (or found to be a duplicate).

        Rows queued before :meth:`start` are written once the writer starts.
        """
        if self._closed:
            raise StorageError("the intake writer is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoreResult] = loop.create_future()
        self._queue.put(_Waiter(row, future, loop))
        return await future

    # -- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                stopping = True
                batch: list[_Waiter] = []
            else:
                batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    continue
                batch.append(item)
            if batch:
                try:
                    self._write(batch)
                except Exception as exc:  # never let the writer thread die: fail this batch
                    log.exception("intake writer error; %d messages answered AE", len(batch))
                    for waiter in batch:
                        waiter.outcome = StorageError(f"could not store the message: {exc}")
                    self._dispatch(batch)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> Connection:
        if self._connection is None or self._connection.closed:
            connection = self._target.connect()
            if self.journal is not None:
                self.journal.attach_store(connection)
            if self._sqlite:
                # This connection never waits in SQLite's busy handler (which sleeps 1, 2, 5,
                # 10... ms) nor runs checkpoints in its commits: it retries a locked database
                # every fraction of a millisecond, and the checkpointer thread copies the WAL.
                connection.exec_driver_sql("PRAGMA busy_timeout=0")
                connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                connection.commit()
            self._connection = connection
        return self._connection

    def _write_batch_when_unlocked(self, batch: list[_Waiter]) -> None:
        if not self._sqlite:
            self._write_batch(batch)
            return
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        pause = 0.0002
        while True:
            try:
                self._write_batch(batch)
                return
            except (OperationalError, sqlite3.OperationalError) as exc:
                # From Core, or from the driver's cursor itself (models.tables.raw_rows).
                reason = str(exc.orig if isinstance(exc, OperationalError) else exc)
                locked = "locked" in reason or "busy" in reason
                if not locked or time.monotonic() > deadline:
                    raise
            if self.on_locked is not None:
                self.on_locked(time.monotonic())
            time.sleep(pause)
            pause = min(pause * 2, LOCK_RETRY_MAX_SECONDS)

    def _checkpoint_loop(self) -> None:
        """SQLite only: copy the WAL into the database file, outside the commit path. With
        the journal, the WAL checkpointed is the journal's: the database's is the workers' to
        checkpoint (SQLite does it in their commits), since intake no longer writes there."""
        while not self._checkpoint_stop.wait(CHECKPOINT_INTERVAL_SECONDS):
            try:
                with self._target.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:
                log.warning("WAL checkpoint failed; retrying later", exc_info=True)

    def _write(self, batch: list[_Waiter]) -> None:
        started = time.perf_counter()
        try:
            self._write_batch_when_unlocked(batch)
        except Exception:
            log.exception("group commit failed; retrying its %d rows one by one", len(batch))
            self._drop_connection()
            for waiter in batch:
                try:
                    self._write_batch_when_unlocked([waiter])
                except Exception as exc:
                    self._drop_connection()
                    log.error(
                        "could not store message",
                        extra={"control_id": waiter.row.values["control_id"]},
                    )
                    waiter.outcome = StorageError(f"could not store the message: {exc}")
        self.batches += 1
        self.rows += len(batch)
        self.last_commit_at = time.monotonic()
        self.busy_seconds += time.perf_counter() - started
        if self.on_commit is not None:
            self.on_commit(self.last_commit_at, self.busy_seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "group commit",
                extra={
                    "count": len(batch),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        self._dispatch(batch)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:  # the connection is already unusable; a new one comes next
                log.debug("closing a failed connection raised", exc_info=True)
            self._connection = None

    def _write_batch(self, batch: list[_Waiter]) -> None:
        firsts: dict[Key, _Waiter] = {}
        repeats: list[tuple[_Waiter, Key]] = []
        for waiter in batch:
            key = waiter.row.key
            if key in firsts:
                repeats.append((waiter, key))
            else:
                firsts[key] = waiter
        connection = self._connect()
        with connection.begin():
            originals = self._insert_rows(connection, firsts)
            # Messages that reused a stored (or same-batch) control id with other content.
            conflicts: dict[Key, tuple[_Waiter, PendingRow]] = {}
            conflict_repeats: list[tuple[_Waiter, Key]] = []
            for key, waiter in firsts.items():
                found = originals[key]
                if found.fresh or not _differs(waiter.row, found):
                    waiter.outcome = found.result(waiter.row.ack)
                else:
                    self._queue_conflict(waiter, found, conflicts, conflict_repeats)
            for waiter, key in repeats:
                found = originals[key]
                if found.fresh:  # the first of this batch was stored: compare with it
                    found = _Stored(found.ack, found.message_id, found.digest, found.conflict_of)
                if _differs(waiter.row, found):
                    self._queue_conflict(waiter, found, conflicts, conflict_repeats)
                else:
                    waiter.outcome = StoreResult(found.ack, True, found.message_id)
            if conflicts:
                stored = self._insert_rows(connection, {k: w for k, (w, _) in conflicts.items()})
                for key, (waiter, _row) in conflicts.items():
                    waiter.outcome = stored[key].result(waiter.row.ack)
                for waiter, key in conflict_repeats:
                    first_outcome = conflicts[key][0].outcome
                    assert isinstance(first_outcome, StoreResult)
                    waiter.outcome = StoreResult(
                        first_outcome.ack,
                        True,
                        first_outcome.message_id,
                        first_outcome.conflict_of,
                    )

    def _queue_conflict(
        self,
        waiter: _Waiter,
        original: _Stored,
        conflicts: dict[Key, tuple[_Waiter, PendingRow]],
        conflict_repeats: list[tuple[_Waiter, Key]],
    ) -> None:
        """Swap the waiter's row for its conflict row (keyed by its own digest)."""
        builder = waiter.row.conflict
        assert builder is not None  # _differs is False without one
        original_id = original.conflict_of or original.message_id
        values, ack = builder(original_id, original.ack)
        row = PendingRow({**values, "conflict_of_id": original_id}, ack)
        waiter.row = row
        if row.key in conflicts:
            conflict_repeats.append((waiter, row.key))
        else:
            conflicts[row.key] = (waiter, row)

    def _insert_rows(self, connection: Connection, rows: dict[Key, _Waiter]) -> dict[Key, _Stored]:
        """Insert the rows (distinct keys); for each key, what the store now holds."""
        inserted = {
            tuple(r[: len(KEY_COLUMNS)]): int(r[len(KEY_COLUMNS)])
            for r in self._insert_returning(connection, [w.row.values for w in rows.values()])
        }
        found: dict[Key, _Stored] = {}
        if self.journal is not None and inserted:
            # New to the journal, but perhaps moved into the database already: look there too.
            found = self._select_stored(connection, list(inserted), STORE_SCHEMA)
            if found:
                ids = [inserted.pop(key) for key in found]
                connection.execute(delete(TABLE).where(TABLE.c.id.in_(ids)))
        found |= {
            key: _Stored(
                waiter.row.ack,
                inserted[key],
                waiter.row.digest,
                waiter.row.values.get("conflict_of_id"),
                fresh=True,
            )
            for key, waiter in rows.items()
            if key in inserted
        }
        missing = [key for key in rows if key not in found]
        if missing:
            found |= self._select_stored(connection, missing)
        for key in missing:
            if key not in found:
                raise StorageError(f"row {key!r} neither inserted nor found")
        return found

    def _insert_returning(
        self, connection: Connection, rows: list[dict[str, Any]]
    ) -> Sequence[Sequence[Any]]:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING the key and id of the rows inserted:
        bound through the column types (`labintake.models.tables.bind`), without Core's
        per-statement work, which was most of a one-message commit's CPU."""
        try:
            bound = bind(connection.dialect, TABLE, rows)
        except ValueError:  # rows of uneven columns
            return list(connection.execute(self._insert, rows))
        return insert_bound_returning(connection, bound, RETURNED, skip_conflicts=True, raw=True)

    def _select_stored(
        self, connection: Connection, keys: list[Key], schema: str | None = None
    ) -> dict[Key, _Stored]:
        """The stored rows of these keys, in the connection's own file or in `schema`.

        Found by control id (an index of its own), the rest of the key compared here: SQLite
        does not look several row values up in an index (``(a, b, ...) IN (VALUES ...)``
        scanned the whole unique index for a batch of two resends or more)."""
        wanted = set(keys)
        ids = sorted({key[3] for key in keys})
        rows = raw_rows(connection, self.stored_sql(len(ids), schema), ids)
        found: dict[Key, _Stored] = {}
        for r in rows:
            key = cast(Key, tuple(r[: len(KEY_COLUMNS)]))
            if key in wanted:
                found[key] = _Stored(bytes(r[5]), int(r[6]), r[7], r[8])
        return found

    def stored_sql(self, count: int, schema: str | None = None) -> str:
        """The look-up of stored rows by `count` control ids (in `schema`, or unqualified)."""
        dialect = self.engine.dialect
        preparer = dialect.identifier_preparer
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        table = preparer.format_table(TABLE)
        if schema:
            table = f"{preparer.quote_schema(schema)}.{table}"
        return (
            f"SELECT {self._stored_columns} FROM {table} "  # noqa: S608 - names from metadata
            f"WHERE {preparer.quote('control_id')} IN ({', '.join([mark] * count)})"
        )

    def _dispatch(self, batch: list[_Waiter]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
        for waiter in batch:
            by_loop.setdefault(waiter.loop, []).append(waiter)
        for loop, waiters in by_loop.items():
            call: Callable[[list[_Waiter]], None] = _resolve
            try:
                loop.call_soon_threadsafe(call, waiters)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                log.warning("intake loop closed before %d results were delivered", len(waiters))
