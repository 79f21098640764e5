"""Intake's journal on SQLite: a file of its own, so that an ACK waits for intake alone.

SQLite has one write lock per file. With the inbound store in the database file, every ACK's
commit waited for whatever write transaction of the workers (reading, verification, release,
delivery outcomes) held that lock, a few milliseconds each: that was most of the ACK p99
under load (docs/benchmarks.md). With the journal, the group-commit writer commits each batch
to ``<database>.intake`` (WAL, ``synchronous=FULL``, the same durability as the database
itself) and answers.

The worker process moves the messages in: the first stage of its pipeline (:meth:`move`)
copies what the journal holds into ``inbound_message`` in the database, by ``id`` (ids are the
journal's, never reused: its table counts from above the largest id the database holds), and
commits; about once a second it deletes from the journal what the database has committed. A
crash in between leaves rows in both places; copying them again inserts nothing (``ON CONFLICT
DO NOTHING``), so a message is never lost nor stored twice. At start, before the listener takes
a message, and at a clean stop, the listener moves whatever the journal holds.

Duplicates: the writer looks a key up in the journal (its unique key) and, inside the same
journal transaction, in the database (attached to its connection as ``store``). Rows are
deleted from the journal only after the database committed their copy, and deleting needs the
journal's write lock, which the writer holds: a key is always found in one place or the other.

Only SQLite files have a journal: on PostgreSQL an intake commit never waits for the workers'
transactions (row locks), and an in-memory database has no file to put one beside.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, delete, func, inspect, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from labintake.config import Settings
from labintake.db import WAL_KEPT_BYTES, make_engine
from labintake.models.messages import InboundMessage
from labintake.models.tables import table_of

log = logging.getLogger("labintake.intake.journal")

STORE_TABLE = table_of(InboundMessage)
# The database, attached to the writer's journal connection under this name.
STORE_SCHEMA = "store"
# The journal, attached to the mover's database connection under this name.
JOURNAL_SCHEMA = "journal"
JOURNAL_SUFFIX = ".intake"
# Rows copied per transaction of the move.
MOVE_BATCH = 500
# The copied rows are deleted from the journal at most this often: each delete takes the
# journal's write lock, which the next ACK's commit waits for. Until then a copied row is
# found in the journal by the duplicate look-up, with the same id and acknowledgement.
CLEAR_SECONDS = 1.0
CLEAR_CHUNK = 100


def journal_in_use(settings: Settings, engine: Engine) -> bool:
    """Whether `labintake serve` keeps intake's journal for this database."""
    return settings.intake_journal and journal_path(engine) is not None


def journal_path(engine: Engine) -> Path | None:
    """Where the journal of the SQLite file behind `engine` lives (None: no journal)."""
    if engine.dialect.name != "sqlite":
        return None
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    return path.with_name(path.name + JOURNAL_SUFFIX)


def _journal_table() -> Table:
    """The journal's table: the store's columns and duplicate key, no other index; ids
    AUTOINCREMENT, so a moved and deleted row's id is never handed out again."""
    table = STORE_TABLE.to_metadata(MetaData())
    for index in list(table.indexes):
        table.indexes.discard(index)
    table.dialect_kwargs["sqlite_autoincrement"] = True
    return table


JOURNAL_TABLE = _journal_table()
# The same table as the mover's connection to the database sees it, attached.
_ATTACHED = JOURNAL_TABLE.to_metadata(MetaData(), schema=JOURNAL_SCHEMA)


class IntakeJournal:
    """The journal beside one SQLite database: prepared and emptied by the listener at its
    start and stop, moved into the database by the worker process's pipeline meanwhile."""

    def __init__(self, store: Engine, path: Path) -> None:
        self.store = store
        self.path = path
        self.store_path = Path(str(make_url(str(store.url)).database))
        self.engine = make_engine(f"sqlite:///{path}")
        self._connection: Connection | None = None
        self._copied_to = 0  # the highest id copied into the database
        self._cleared_at = time.monotonic()

    @classmethod
    def beside(cls, store: Engine) -> IntakeJournal | None:
        path = journal_path(store)
        return cls(store, path) if path is not None else None

    # -- the listener: start and stop ---------------------------------------------------
    def prepare(self) -> int:
        """Create the journal (or bring an older one to this version's columns), move what a
        stop or a crash left in it, and count its ids from above the database's. Rows moved."""
        with self.engine.connect() as connection:
            found = inspect(connection)
            columns = (
                {c["name"] for c in found.get_columns(JOURNAL_TABLE.name)}
                if found.has_table(JOURNAL_TABLE.name)
                else None
            )
        moved = 0
        if columns is not None and columns != {c.name for c in JOURNAL_TABLE.columns}:
            # A journal of another version: its rows moved by the columns both know.
            moved = self.move_all(columns)
            with self.engine.begin() as connection:
                connection.exec_driver_sql(f"DROP TABLE {JOURNAL_TABLE.name}")
        JOURNAL_TABLE.create(self.engine, checkfirst=True)
        moved += self.move_all()
        with self.store.connect() as connection:
            highest = connection.execute(select(func.max(STORE_TABLE.c.id))).scalar() or 0
        with self.engine.begin() as connection:
            # sqlite_sequence has the table's row once an id was handed out; raise it only.
            connection.exec_driver_sql(
                "INSERT INTO sqlite_sequence (name, seq) SELECT ?, 0 WHERE NOT EXISTS "
                "(SELECT 1 FROM sqlite_sequence WHERE name = ?)",
                (JOURNAL_TABLE.name, JOURNAL_TABLE.name),
            )
            connection.exec_driver_sql(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?",
                (highest, JOURNAL_TABLE.name),
            )
        if moved:
            log.warning(
                f"moved {moved:,} acknowledged messages from the intake journal into the "
                "database (left there by a stop that did not finish)",
                extra={"count": moved},
            )
        return moved

    def attach_store(self, connection: Connection) -> None:
        """Attach the database to a journal connection (the writer's duplicate look-up)."""
        connection.exec_driver_sql(f"ATTACH DATABASE ? AS {STORE_SCHEMA}", (str(self.store_path),))

    def stop(self) -> None:
        """Move what is left, then let go of the files (the listener, once its writer
        stopped)."""
        try:
            self.move_all()
        except Exception:
            log.exception("could not empty the intake journal; its messages are moved at start")
        self._close_connection()
        self.engine.dispose()

    # -- the worker: moving -------------------------------------------------------------
    def move(self) -> int:
        """The pipeline's first stage: copy what the journal holds into the database (up to
        MOVE_BATCH rows), and delete what was copied once CLEAR_SECONDS have passed. Rows
        copied. A failure (the database full or read-only) leaves everything in the journal;
        the next round tries again."""
        try:
            taken = self.copy_once()
            now = time.monotonic()
            if now - self._cleared_at >= CLEAR_SECONDS:
                self._cleared_at = now
                self.clear()
        except Exception:
            self._close_connection()
            raise
        return taken

    def _mover_connection(self) -> Connection:
        if self._connection is None or self._connection.closed:
            connection = self.store.connect()
            connection.exec_driver_sql(f"ATTACH DATABASE ? AS {JOURNAL_SCHEMA}", (str(self.path),))
            # Deleting copied rows need not reach the disk at once: rows copied twice after a
            # crash insert nothing the second time.
            connection.exec_driver_sql(f"PRAGMA {JOURNAL_SCHEMA}.synchronous=NORMAL")
            # This connection's deletes start the journal's log over too (labintake.db).
            connection.exec_driver_sql(
                f"PRAGMA {JOURNAL_SCHEMA}.journal_size_limit={WAL_KEPT_BYTES}"
            )
            connection.commit()
            self._connection = connection
        return self._connection

    def _close_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:  # unusable already; a new one comes next
                log.debug("closing the mover's connection raised", exc_info=True)
            self._connection = None

    def copy_once(self, columns: set[str] | None = None) -> int:
        """Copy up to MOVE_BATCH rows not copied yet into the database and commit (rows
        taken). They stay in the journal until :meth:`clear`."""
        connection = self._mover_connection()
        after = _ATTACHED.c.id > self._copied_to
        first = select(_ATTACHED.c.id).where(after).order_by(_ATTACHED.c.id).limit(MOVE_BATCH)
        ids = first.subquery()
        found = connection.execute(select(func.max(ids.c.id), func.count())).one()
        connection.rollback()
        highest, taken = found[0], int(found[1])
        if highest is None:
            return 0
        names = [c.name for c in STORE_TABLE.columns if columns is None or c.name in columns]
        rows = select(*(_ATTACHED.c[name] for name in names)).where(
            after, _ATTACHED.c.id <= highest
        )
        copy = sqlite.insert(STORE_TABLE).from_select(names, rows).on_conflict_do_nothing()
        with connection.begin():
            copied = connection.execute(copy).rowcount
        self._copied_to = highest
        if copied < taken:
            # Rows a crash left in both places, or moved by the other process meanwhile.
            log.info("intake journal rows already in the database", extra={"count": taken - copied})
        return taken

    def clear(self) -> int:
        """Delete from the journal what this object copied into the database, CLEAR_CHUNK
        rows a transaction: each holds the journal's write lock, which an ACK's commit waits
        for (rows deleted)."""
        if self._copied_to == 0:
            return 0
        connection = self._mover_connection()
        deleted = 0
        while True:
            chunk = (
                select(_ATTACHED.c.id)
                .where(_ATTACHED.c.id <= self._copied_to)
                .order_by(_ATTACHED.c.id)
                .limit(CLEAR_CHUNK)
            )
            done = delete(_ATTACHED).where(_ATTACHED.c.id.in_(chunk))
            with connection.begin():
                count = int(connection.execute(done).rowcount)
            deleted += count
            if count < CLEAR_CHUNK:
                return deleted

    def move_all(self, columns: set[str] | None = None) -> int:
        """Copy everything, then clear (rows copied)."""
        moved = 0
        while count := self.copy_once(columns):
            moved += count
        self.clear()
        return moved

    def pending(self) -> int:
        """Rows in the journal, not yet moved."""
        with self.engine.connect() as connection:
            count: Any = connection.execute(select(func.count()).select_from(JOURNAL_TABLE))
            return int(count.scalar() or 0)
