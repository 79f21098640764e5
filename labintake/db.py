"""Database engines and sessions: SQLite by default (WAL, synchronous FULL), PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Session, create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
T = TypeVar("T")

# Orders (or messages) the pipeline's stages write per transaction, whatever their batch. On
# SQLite a write transaction holds the database's one write lock from its first write to its
# commit, and every intake commit (so every ACK) arriving meanwhile waits behind it: about
# 0.1 ms per message read and 0.06 per order verified or released on the 2-core machine, so
# 50 keep each hold to a few milliseconds, while a batch of hundreds (cheaper per order to
# read and check) is written as several such transactions (docs/benchmarks.md). Each
# transaction has a cost of its own: a backlog of 2,000 drained in batches of 500 costs
# about 0.05-0.15 ms more CPU per order written 50 at a time than 500 at a time.
WRITE_CHUNK = 50
# ... and at most about this many rows written (an order verified with 100 tests and 100
# findings is some 200): what a transaction holds the lock for grows with its rows, and one
# message at the limits (100 orders of 100 tests) written 50 orders at a time held it for
# 90-180 ms per transaction. 300 leaves ordinary chunks (a few rows per order) at 50 orders.
WRITE_ROWS = 300


def write_chunk(engine: Engine) -> int:
    """Orders (or messages) per write transaction for the stages on `engine`: WRITE_CHUNK where
    intake shares the write lock (SQLite); a whole batch elsewhere, where no ACK waits for it."""
    return WRITE_CHUNK if engine.dialect.name == "sqlite" else 10_000


def chunked(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`values` in consecutive slices of at most `size`."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def chunked_by(
    values: Sequence[T], size: int, rows: int, weight: Callable[[T], int]
) -> Iterator[Sequence[T]]:
    """`values` in consecutive slices of at most `size` values and at most `rows` in weight
    (each slice holds at least one value, however heavy)."""
    start, total = 0, 0
    for index, value in enumerate(values):
        heavy = weight(value)
        if index > start and (index - start >= size or total + heavy > rows):
            yield values[start:index]
            start, total = index, 0
        total += heavy
    if start < len(values):
        yield values[start:]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Any) -> Callable[[datetime | None], Any]:
        """`process_bind_param` then the backend type's own processor (SQLite's formats the
        text stored), remembering the last value bound: a batch binds one `now` to every
        row (created_at, updated_at, an event's `at`), so it is converted once per batch
        instead of once per row. The remembered value is compared by identity and kept
        referenced, so a different datetime object is always converted afresh."""
        convert = self.process_bind_param
        impl_processor = self.impl_instance.bind_processor(dialect)
        last: list[tuple[datetime | None, Any]] = [(None, None)]

        def process(value: datetime | None) -> Any:
            if value is None:
                return None
            seen, bound = last[0]
            if value is seen:
                return bound
            bound = convert(value, dialect)
            if impl_processor is not None:
                bound = impl_processor(bound)
            last[0] = (value, bound)  # one tuple: threads sharing the engine see a pair
            return bound

        return process

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# What a write-ahead log keeps on disk once a checkpoint has copied it into the database.
# Without a limit it keeps the size it grew to in the longest stretch without a complete
# checkpoint (a burst, a slow reader): 52 MB for intake's journal after a few thousand 9 KB
# messages, space a full disk never got back. The connection that next starts the log
# over cuts it to this, so each connection says it (see also IntakeJournal).
WAL_KEPT_BYTES = 16 * 2**20


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}")
    cursor.close()


def _read_only_connections_are_discarded(context: Any) -> None:
    """A SQLite connection opened while its file could not be written (marked immutable, a
    read-only mount) stays read-only for its whole life: "attempt to write a readonly
    database" on every write, long after the file is writable again. Such an error counts as
    a lost connection, so the pool drops it and the connections beside it, and the next
    checkout opens the file again."""
    if "readonly database" in str(context.original_exception):
        context.is_disconnect = True


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    """An engine for `database_url`; creates the SQLite file's folder when needed."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "handle_error", _read_only_connections_are_discarded)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema at `database_url` to `revision` with Alembic."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    make_engine(database_url).dispose()  # creates the SQLite folder if needed
    command.upgrade(config, revision)
