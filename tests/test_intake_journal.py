"""Intake's journal beside a SQLite file: acknowledged from it, moved into the database,
each message once, duplicates and conflicts told apart wherever the original is."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from mllp_messages import msa, orm, stored_rows
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from test_intake import KNOWN, PEER

from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.errors import ConfigurationError
from labintake.intake import Intake
from labintake.intake import journal as journal_module
from labintake.intake.journal import IntakeJournal, journal_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'labintake.sqlite3'}"
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _settings(engine: Engine, **changes: object) -> Settings:
    return Settings(
        development=True,
        database_url=str(engine.url),
        interfaces_dir=REPO / "interfaces",
        code_tables_dir=REPO / "code_tables",
        **changes,
    )


def _in_database(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT control_id FROM inbound_message ORDER BY id"))
        return [str(row[0]) for row in rows]


def _journal_ids(journal: IntakeJournal) -> list[int]:
    with journal.engine.connect() as connection:
        rows = connection.execute(text("SELECT id FROM inbound_message ORDER BY id"))
        return [int(row[0]) for row in rows]


def _intake_without_mover(engine: Engine) -> Intake:
    """An Intake committing to the journal, whose rows move only when the test says so."""
    intake = Intake(_settings(engine), engine, interfaces=KNOWN, journal=True)
    assert intake.journal is not None
    intake.journal.prepare()
    intake.writer.start()
    return intake


def _send(intake: Intake, *messages: bytes) -> list[bytes]:
    async def go() -> list[bytes]:
        return [await intake.handle(message, PEER) for message in messages]

    return asyncio.run(go())


def test_acknowledged_from_the_journal_then_copied_then_cleared(sqlite_file: Engine) -> None:
    intake = _intake_without_mover(sqlite_file)
    journal = intake.journal
    assert journal is not None
    try:
        acks = _send(intake, orm("J1").encode(), orm("J2").encode())
        assert [msa(ack)[1] for ack in acks] == ["AA", "AA"]
        # Acknowledged: committed to the journal; the database has nothing yet.
        assert journal.pending() == 2
        assert _in_database(sqlite_file) == []
        assert journal.copy_once() == 2
        assert _in_database(sqlite_file) == ["J1", "J2"]
        assert journal.pending() == 2  # kept until cleared: the duplicate look-up finds them
        assert journal.copy_once() == 0  # nothing new
        assert journal.clear() == 2
        assert journal.pending() == 0
        [ack] = _send(intake, orm("J3").encode())
        assert msa(ack)[1] == "AA"
    finally:
        intake.close()
    # Closing moves what is left and empties the journal.
    assert _in_database(sqlite_file) == ["J1", "J2", "J3"]
    assert journal.pending() == 0
    rows = stored_rows(sqlite_file)
    assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)


def test_a_resend_gets_the_original_ack_wherever_the_original_is(sqlite_file: Engine) -> None:
    intake = _intake_without_mover(sqlite_file)
    journal = intake.journal
    assert journal is not None
    try:
        moved, waiting = orm("D1").encode(), orm("D2").encode()
        first_moved, first_waiting = _send(intake, moved, waiting)
        journal.copy_once()
        journal.clear()  # D1 only in the database now (D2 was copied too: send it anew)
        waiting_again = orm("D3").encode()
        [first_in_journal] = _send(intake, waiting_again)
        assert journal.pending() == 1
        again = _send(intake, moved, waiting_again)
        assert again == [first_moved, first_in_journal]
        assert journal.pending() == 1  # the resend of D1 left nothing in the journal
    finally:
        intake.close()
    assert _in_database(sqlite_file) == ["D1", "D2", "D3"]
    assert first_waiting  # D2 answered once, stored once


def test_a_conflict_with_a_moved_original_points_at_it(sqlite_file: Engine) -> None:
    intake = _intake_without_mover(sqlite_file)
    journal = intake.journal
    assert journal is not None
    try:
        _send(intake, orm("K1").encode())
        journal.copy_once()
        journal.clear()
        other = orm("K1", patient_name="SOMEONE^ELSE").encode()
        [conflict_ack] = _send(intake, other)
        assert msa(conflict_ack)[1] == "AE"
        [again] = _send(intake, other)
        assert again == conflict_ack
    finally:
        intake.close()
    original, conflict = stored_rows(sqlite_file)
    assert conflict["conflict_of_id"] == original["id"]
    assert conflict["status"] == "rejected"


def test_what_a_crash_left_is_moved_once_at_start_and_ids_go_on_above(
    sqlite_file: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    intake = _intake_without_mover(sqlite_file)
    journal = intake.journal
    assert journal is not None
    _send(intake, orm("C1").encode(), orm("C2").encode())
    journal.copy_once()  # copied, not cleared: a crash now leaves C1, C2 in both places
    _send(intake, orm("C3").encode())  # only in the journal
    intake.writer.stop()  # no close(): the journal is left as a kill -9 would leave it
    assert journal.pending() == 3
    highest = max(_journal_ids(journal))

    restarted = IntakeJournal(sqlite_file, journal.path)
    with caplog.at_level(logging.WARNING, logger="labintake.intake.journal"):
        assert restarted.prepare() == 3
    assert "moved 3 acknowledged messages" in caplog.text
    assert _in_database(sqlite_file) == ["C1", "C2", "C3"]
    assert restarted.pending() == 0
    # The next message gets an id above every id handed out, though the journal is empty.
    later = Intake(_settings(sqlite_file), sqlite_file, interfaces=KNOWN, journal=True)

    async def go() -> None:
        async with later:
            await later.handle(orm("C4").encode(), PEER)

    asyncio.run(go())
    rows = stored_rows(sqlite_file)
    assert [row["control_id"] for row in rows] == ["C1", "C2", "C3", "C4"]
    assert int(str(rows[-1]["id"])) > highest
    restarted.stop()


def test_ids_start_above_the_database_when_the_journal_is_new(sqlite_file: Engine) -> None:
    async def go(journal: bool, *ids: str) -> None:
        intake = Intake(_settings(sqlite_file), sqlite_file, interfaces=KNOWN, journal=journal)
        async with intake:
            for control_id in ids:
                await intake.handle(orm(control_id).encode(), PEER)

    asyncio.run(go(False, "N1", "N2", "N3"))  # the database alone, as before the journal
    asyncio.run(go(True, "N4"))
    rows = stored_rows(sqlite_file)
    assert [row["control_id"] for row in rows] == ["N1", "N2", "N3", "N4"]
    assert len({row["id"] for row in rows}) == 4


def test_a_journal_of_another_version_is_moved_by_the_columns_both_have(
    sqlite_file: Engine,
) -> None:
    path = journal_path(sqlite_file)
    assert path is not None
    old = make_engine(f"sqlite:///{path}")
    with old.begin() as connection:  # a journal without read_attempts, with a column since gone
        connection.exec_driver_sql(
            "CREATE TABLE inbound_message (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at "
            "DATETIME NOT NULL, sending_application VARCHAR, sending_facility VARCHAR, "
            "control_id VARCHAR NOT NULL, ack BLOB NOT NULL, status VARCHAR, gone TEXT)"
        )
        connection.exec_driver_sql(
            "INSERT INTO inbound_message (id, received_at, sending_application, "
            "sending_facility, control_id, ack, status, gone) VALUES (7, "
            "'2026-12-01 10:00:00.000000', 'EPIC', 'NORTHSIDE', 'OLD1', x'4d5348', 'received', "
            "'x')"
        )
    old.dispose()
    journal = IntakeJournal(sqlite_file, path)
    assert journal.prepare() == 1
    [row] = stored_rows(sqlite_file)
    assert (row["id"], row["control_id"], row["read_attempts"]) == (7, "OLD1", 0)
    with journal.engine.connect() as connection:
        columns = {r[1] for r in connection.exec_driver_sql("PRAGMA table_info(inbound_message)")}
    assert "read_attempts" in columns
    assert "gone" not in columns
    journal.stop()


def test_a_failed_move_keeps_the_messages_for_the_next_round(
    sqlite_file: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = _intake_without_mover(sqlite_file)
    try:
        acks = _send(intake, *(orm(f"F{i}").encode() for i in range(3)))
        assert [msa(ack)[1] for ack in acks] == ["AA"] * 3
        # The worker process's stage, on its own connection to the database.
        mover = IntakeJournal.beside(sqlite_file)
        assert mover is not None
        real = IntakeJournal.copy_once

        def failing(self: IntakeJournal, columns: set[str] | None = None) -> int:
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))

        monkeypatch.setattr(IntakeJournal, "copy_once", failing)
        with pytest.raises(OperationalError):
            mover.move()
        assert _in_database(sqlite_file) == []
        assert mover.pending() == 3
        monkeypatch.setattr(IntakeJournal, "copy_once", real)
        monkeypatch.setattr(journal_module, "CLEAR_SECONDS", 0.0)
        assert mover.move() == 3
        assert _in_database(sqlite_file) == ["F0", "F1", "F2"]
        assert mover.pending() == 0  # copied, then cleared in the same round
        assert mover.move() == 0
        mover.stop()
    finally:
        intake.close()
    assert _in_database(sqlite_file) == ["F0", "F1", "F2"]


def test_the_worker_process_moves_the_messages_before_reading_them(sqlite_file: Engine) -> None:
    """`labintake serve`'s pipeline on SQLite begins with the journal's stage."""
    from labintake.background import BackgroundWorkers, register_workers
    from labintake.batching import IntakeSignal

    workers = BackgroundWorkers()
    extras = register_workers(_settings(sqlite_file), sqlite_file, workers, IntakeSignal([0.0] * 3))
    try:
        assert workers.names[:2] == ["intake-journal", "reader"]
    finally:
        for extra in extras:
            extra.stop()


def test_only_a_sqlite_file_kept_by_the_settings_has_a_journal(sqlite_file: Engine) -> None:
    assert Intake(_settings(sqlite_file), sqlite_file, journal=True).journal is not None
    off = _settings(sqlite_file, intake_journal=False)
    assert Intake(off, sqlite_file, journal=True).journal is None
    assert Intake(_settings(sqlite_file), sqlite_file).journal is None  # not asked for
    memory = make_engine("sqlite://")
    assert journal_path(memory) is None
    postgresql = make_engine("postgresql+psycopg://localhost/none")
    assert journal_path(postgresql) is None
    path = journal_path(sqlite_file)
    assert path is not None
    assert path.name == "labintake.sqlite3.intake"


def test_a_journal_that_cannot_be_opened_stops_the_start_with_a_clear_error(
    sqlite_file: Engine,
) -> None:
    path = journal_path(sqlite_file)
    assert path is not None
    path.mkdir()  # a folder where the journal's file should be
    intake = Intake(_settings(sqlite_file), sqlite_file, interfaces=KNOWN, journal=True)
    with pytest.raises(ConfigurationError, match="LABINTAKE_INTAKE_JOURNAL=false"):
        intake.prepare()


def _wal_bytes(journal: IntakeJournal) -> int:
    wal = Path(f"{journal.path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _checkpoint(journal: IntakeJournal) -> None:
    with journal.engine.connect() as connection:
        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        assert busy == 0


@pytest.mark.parametrize("restarted_by", ["intake", "mover"])
def test_the_journal_log_gives_back_its_space_after_a_checkpoint(
    sqlite_file: Engine, monkeypatch: pytest.MonkeyPatch, restarted_by: str
) -> None:
    """After a burst the journal's write-ahead log is cut back to the limit by whichever
    connection starts it over, intake's or the mover's, instead of keeping the size it grew
    to (space a full disk never got back)."""
    import labintake.db as db_module

    limit = 64 * 1024
    monkeypatch.setattr(db_module, "WAL_KEPT_BYTES", limit)
    monkeypatch.setattr(journal_module, "WAL_KEPT_BYTES", limit)
    intake = _intake_without_mover(sqlite_file)
    journal = intake.journal
    assert journal is not None
    try:
        _send(intake, *(orm(f"W{n}").encode() for n in range(300)))
        grown = _wal_bytes(journal)
        assert grown > 4 * limit
        _checkpoint(journal)
        assert _wal_bytes(journal) == grown  # copied into the journal file, not yet cut
        if restarted_by == "intake":
            [ack] = _send(intake, orm("W-after").encode())
            assert msa(ack)[1] == "AA"
            assert _wal_bytes(journal) <= limit
        else:
            # The deletes' own frames follow the cut: less than the log had grown to, but
            # more than the limit.
            assert journal.copy_once() == 300
            assert journal.clear() == 300
            assert _wal_bytes(journal) < grown / 2
    finally:
        intake.close()
    assert len(_in_database(sqlite_file)) == 300 + (restarted_by == "intake")
