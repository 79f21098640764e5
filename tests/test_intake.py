"""The intake service: decisions, storage and acknowledgements, without a socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mllp_messages import err, msa, orm, parse_ack, stored_rows
from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.intake import Intake
from labintake.interfaces import Interface, InterfaceRegistry
from labintake.mllp.framing import OversizedMessage

PEER = "192.0.2.10:40000"
KNOWN = InterfaceRegistry(
    [Interface(name="northside-epic", sending_application="EPIC", sending_facility="NORTHSIDE")]
)


def run_intake(
    settings: Settings,
    engine: Engine,
    *messages: bytes,
    interfaces: InterfaceRegistry = KNOWN,
) -> list[bytes]:
    """Start an Intake, hand it `messages` one after another, stop it; return the replies."""

    async def go() -> list[bytes]:
        async with Intake(settings, engine, interfaces=interfaces) as intake:
            return [await intake.handle(message, PEER) for message in messages]

    return asyncio.run(go())


def test_order_is_stored_as_received_then_acknowledged_aa(
    settings: Settings, engine: Engine
) -> None:
    raw = orm("C1", separator="\n").encode()
    [ack] = run_intake(settings, engine, raw)
    assert msa(ack)[1:3] == ["AA", "C1"]
    parse_ack(ack, "2.5.1")
    [row] = stored_rows(engine)
    assert bytes(row["raw"]) == raw  # as received, newlines and all
    assert bytes(row["ack"]) == ack
    assert row["ack_code"] == "AA"
    assert row["status"] == "received"
    assert row["error"] is None
    assert (row["sending_application"], row["sending_facility"], row["control_id"]) == (
        "EPIC",
        "NORTHSIDE",
        "C1",
    )
    assert (row["receiving_application"], row["receiving_facility"]) == ("LABINTAKE", "REFLAB")
    assert (row["message_type"], row["version"]) == ("ORM^O01", "2.5.1")
    assert row["peer"] == PEER
    assert row["interface"] == "northside-epic"
    assert row["received_at"] is not None


def test_oml_o21_is_accepted(settings: Settings, engine: Engine) -> None:
    [ack] = run_intake(settings, engine, orm("C2", message_type="OML^O21^OML_O21").encode())
    assert msa(ack)[1] == "AA"


def test_non_order_message_type_is_rejected_ar_200_and_kept(
    settings: Settings, engine: Engine
) -> None:
    [ack] = run_intake(settings, engine, orm("C3", message_type="ADT^A01^ADT_A01").encode())
    assert msa(ack)[1:3] == ["AR", "C3"]
    assert err(ack)[2:5] == ["MSH^1^9", "200^Unsupported message type^HL70357", "E"]
    [row] = stored_rows(engine)
    assert row["status"] == "rejected"
    assert row["ack_code"] == "AR"
    assert "ADT^A01 is not accepted" in str(row["error"])


def test_order_type_with_an_unknown_event_is_rejected_ar_201(
    settings: Settings, engine: Engine
) -> None:
    [ack] = run_intake(settings, engine, orm("C4", message_type="ORM^O99").encode())
    assert msa(ack)[1] == "AR"
    assert err(ack)[3].startswith("201^")


def test_accepted_message_types_come_from_settings(settings: Settings, engine: Engine) -> None:
    settings = settings.model_copy(update={"accepted_message_types": ["ORM^O01", "ADT^A01"]})
    [ack] = run_intake(settings, engine, orm("C5", message_type="ADT^A01").encode())
    assert msa(ack)[1] == "AA"


def test_unsupported_version_is_rejected_ar_203(settings: Settings, engine: Engine) -> None:
    [ack] = run_intake(settings, engine, orm("C6", version="2.1").encode())
    assert msa(ack)[1] == "AR"
    assert err(ack)[2:4] == ["MSH^1^12", "203^Unsupported version id^HL70357"]
    assert stored_rows(engine)[0]["status"] == "rejected"


def test_unknown_sender_is_rejected_when_the_allow_list_is_on(
    settings: Settings, engine: Engine
) -> None:
    settings = settings.model_copy(update={"enforce_sender_allowlist": True})
    unknown, known = run_intake(
        settings,
        engine,
        orm("C7", sending_facility="ELSEWHERE").encode(),
        orm("C8").encode(),
    )
    assert msa(unknown)[1] == "AR"
    assert err(unknown)[2:4] == ["MSH^1^4", "103^Table value not found^HL70357"]
    assert "ELSEWHERE" in err(unknown)[8]
    assert msa(known)[1] == "AA"
    assert [r["status"] for r in stored_rows(engine)] == ["rejected", "received"]


def test_unknown_sender_is_accepted_when_the_allow_list_is_off(
    settings: Settings, engine: Engine
) -> None:
    [ack] = run_intake(settings, engine, orm("C9", sending_facility="ELSEWHERE").encode())
    assert msa(ack)[1] == "AA"
    assert stored_rows(engine)[0]["interface"] is None


def test_message_without_msh_gets_ar_and_is_not_stored(settings: Settings, engine: Engine) -> None:
    [ack] = run_intake(settings, engine, b"PID|1||X\rOBR|1\r")
    assert msa(ack)[1:3] == ["AR", ""]
    assert err(ack)[2:4] == ["MSH^1", "100^Segment sequence error^HL70357"]
    assert stored_rows(engine) == []


def test_missing_control_id_gets_ae_and_is_not_stored(settings: Settings, engine: Engine) -> None:
    [ack] = run_intake(settings, engine, orm("").encode())
    assert msa(ack)[1] == "AE"
    assert err(ack)[2:4] == ["MSH^1^10", "101^Required field missing^HL70357"]
    assert stored_rows(engine) == []


def test_missing_message_type_gets_ae_and_is_kept_as_rejected(
    settings: Settings, engine: Engine
) -> None:
    [ack] = run_intake(settings, engine, orm("C10", message_type="").encode())
    assert msa(ack)[1:3] == ["AE", "C10"]
    assert err(ack)[2] == "MSH^1^9"
    [row] = stored_rows(engine)
    assert (row["status"], row["ack_code"]) == ("rejected", "AE")


def test_duplicate_returns_the_original_ack_and_stores_nothing_new(
    settings: Settings, engine: Engine
) -> None:
    raw = orm("D1").encode()
    first, second, other = run_intake(settings, engine, raw, raw, orm("D2").encode())
    assert second == first
    assert other != first
    assert [r["control_id"] for r in stored_rows(engine)] == ["D1", "D2"]


def test_duplicate_of_a_rejected_message_returns_the_original_ar(
    settings: Settings, engine: Engine
) -> None:
    raw = orm("D3", message_type="ADT^A01").encode()
    first, second = run_intake(settings, engine, raw, raw)
    assert second == first
    assert msa(second)[1] == "AR"
    assert len(stored_rows(engine)) == 1


def test_duplicate_is_recognised_across_a_restart(settings: Settings, engine: Engine) -> None:
    raw = orm("D4").encode()
    [first] = run_intake(settings, engine, raw)
    [again] = run_intake(settings, engine, raw)  # a new Intake, as after a restart
    assert again == first
    assert len(stored_rows(engine)) == 1


def test_same_control_id_from_another_sender_is_not_a_duplicate(
    settings: Settings, engine: Engine
) -> None:
    first, second = run_intake(
        settings, engine, orm("D5").encode(), orm("D5", sending_facility="SOUTHSIDE").encode()
    )
    assert msa(first)[1] == msa(second)[1] == "AA"
    assert len(stored_rows(engine)) == 2


def test_duplicates_inside_one_commit_store_once_and_share_the_ack(
    settings: Settings, engine: Engine
) -> None:
    raw = orm("D6").encode()

    async def go() -> list[bytes]:
        intake = Intake(settings, engine, interfaces=KNOWN)
        # Queue everything before the writer starts, so all rows land in one transaction.
        tasks = [
            asyncio.create_task(intake.handle(m, PEER)) for m in (raw, raw, orm("D7").encode(), raw)
        ]
        await asyncio.sleep(0.05)
        intake.start()
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            intake.close()
            assert intake.writer.batches == 1

    a, b, c, d = asyncio.run(go())
    assert a == b == d
    assert msa(c)[1:3] == ["AA", "D7"]
    assert sorted(r["control_id"] for r in stored_rows(engine)) == ["D6", "D7"]


def test_many_concurrent_messages_are_each_stored_once(settings: Settings, engine: Engine) -> None:
    messages = [orm(f"M{i}").encode() for i in range(300)]

    async def go() -> list[bytes]:
        async with Intake(settings, engine, interfaces=KNOWN) as intake:
            return list(await asyncio.gather(*(intake.handle(m, PEER) for m in messages)))

    acks = asyncio.run(go())
    assert [msa(a)[2] for a in acks] == [f"M{i}" for i in range(300)]
    assert all(msa(a)[1] == "AA" for a in acks)
    assert len(stored_rows(engine)) == 300


def test_enhanced_mode_answers_ca_and_honours_never(settings: Settings, engine: Engine) -> None:
    always, never, errors_only, rejected = run_intake(
        settings,
        engine,
        orm("E1", accept_ack="AL", application_ack="NE").encode(),
        orm("E2", accept_ack="NE", application_ack="AL").encode(),
        orm("E3", accept_ack="ER").encode(),
        orm("E4", accept_ack="ER", message_type="ADT^A01").encode(),
    )
    assert msa(always)[1] == "CA"
    assert never == b""
    assert errors_only == b""
    assert msa(rejected)[1] == "CR"
    rows = {r["control_id"]: r for r in stored_rows(engine)}
    assert rows["E2"]["ack_code"] == "CA"  # stored and committed even though no reply was sent
    assert rows["E3"]["status"] == "received"
    assert rows["E4"]["ack_code"] == "CR"


def test_enhanced_mode_error_is_ce(settings: Settings, engine: Engine) -> None:
    [ack] = run_intake(settings, engine, orm("E5", accept_ack="AL", message_type="").encode())
    assert msa(ack)[1] == "CE"


def test_latin1_message_is_stored_raw_and_answered_in_latin1(
    settings: Settings, engine: Engine
) -> None:
    raw = orm(
        "CS1", sending_facility="KÖLN", charset="8859/1", patient_name="MÜLLER^JÜRGEN"
    ).encode("latin-1")
    [ack] = run_intake(settings, engine, raw)
    assert "|KÖLN|" in ack.decode("latin-1")
    parse_ack(ack, "2.5.1", "latin-1")
    [row] = stored_rows(engine)
    assert bytes(row["raw"]) == raw
    assert row["sending_facility"] == "KÖLN"
    assert row["charset"] == "8859/1"


def test_utf8_message_is_answered_in_utf8(settings: Settings, engine: Engine) -> None:
    raw = orm("CS2", sending_facility="ZÜRICH", charset="UNICODE UTF-8").encode("utf-8")
    [ack] = run_intake(settings, engine, raw)
    assert "|ZÜRICH|" in ack.decode("utf-8")
    parse_ack(ack, "2.5.1", "utf-8")
    assert stored_rows(engine)[0]["sending_facility"] == "ZÜRICH"


def test_undecodable_header_bytes_still_get_an_answer(settings: Settings, engine: Engine) -> None:
    raw = (
        orm("CS3", sending_facility="X", charset="UNICODE UTF-8")
        .encode()
        .replace(b"|X|", b"|\xff\xfe|")
    )
    [ack] = run_intake(settings, engine, raw)
    assert msa(ack)[1] == "AA"
    assert bytes(stored_rows(engine)[0]["raw"]) == raw


def test_oversized_message_gets_ar_and_is_not_stored(settings: Settings, engine: Engine) -> None:
    async def go() -> bytes:
        async with Intake(settings, engine, interfaces=KNOWN) as intake:
            return intake.handle_oversized(OversizedMessage(orm("BIG").encode(), 5_000_000), PEER)

    ack = asyncio.run(go())
    assert msa(ack)[1:3] == ["AR", "BIG"]
    assert "5000000 bytes exceeds the limit" in err(ack)[8]
    assert stored_rows(engine) == []


def test_overlong_header_values_are_cut_to_fit_and_still_stored(
    settings: Settings, engine: Engine
) -> None:
    [ack] = run_intake(settings, engine, orm("L" * 300, sending_facility="F" * 400).encode())
    assert msa(ack)[1] == "AA"
    [row] = stored_rows(engine)
    assert len(str(row["control_id"])) == 199
    assert len(str(row["sending_facility"])) == 227


def _broken_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose database refuses every intake write."""
    if settings.is_sqlite:
        from sqlalchemy import text

        from labintake.db import make_engine, migrate

        url = f"sqlite:///{tmp_path / 'broken.sqlite3'}"
        migrate(url)
        broken = make_engine(url)
        with broken.begin() as connection:
            connection.execute(text("DROP TABLE inbound_message"))
        broken.dispose()
    else:
        url = settings.database_url.rsplit("/", 1)[0] + "/labintake_no_such_database"
    return settings.model_copy(update={"database_url": url})


def test_store_failure_never_answers_aa(settings: Settings, tmp_path: Path) -> None:
    from labintake.db import make_engine

    broken = _broken_settings(settings, tmp_path)
    engine = make_engine(broken.database_url)
    try:
        first, second = run_intake(broken, engine, orm("F1").encode(), orm("F2").encode())
    finally:
        engine.dispose()
    for ack, control_id in ((first, "F1"), (second, "F2")):
        assert msa(ack)[1:3] == ["AE", control_id]
        assert err(ack)[3].startswith("207^")
        assert "resend" in err(ack)[8]


def test_message_refused_by_a_failing_store_is_taken_after_recovery(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    from labintake.db import make_engine

    raw = orm("F3").encode()
    broken = _broken_settings(settings, tmp_path)
    broken_engine = make_engine(broken.database_url)
    try:
        [refused] = run_intake(broken, broken_engine, raw)
    finally:
        broken_engine.dispose()
    [accepted] = run_intake(settings, engine, raw)
    assert msa(refused)[1] == "AE"
    assert msa(accepted)[1] == "AA"
    assert len(stored_rows(engine)) == 1


def test_store_waits_for_another_writer_instead_of_failing(
    settings: Settings, engine: Engine
) -> None:
    """Another process holding the write lock delays the ACK; it never turns it into an AE."""
    import threading
    import time

    from sqlalchemy import text

    locked = threading.Event()

    def hold_the_lock() -> None:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.begin()
                connection.execute(text("LOCK TABLE inbound_message IN EXCLUSIVE MODE"))
            locked.set()
            time.sleep(0.5)
            connection.rollback()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    locked.wait(5)
    started = time.monotonic()
    [ack] = run_intake(settings, engine, orm("W1").encode())
    holder.join()
    assert msa(ack)[1:3] == ["AA", "W1"]
    assert time.monotonic() - started >= 0.3
    assert len(stored_rows(engine)) == 1


def test_a_store_that_finds_sqlite_locked_says_so_until_its_commit(
    settings: Settings, engine: Engine
) -> None:
    """The writer reports a locked database (the worker process then lets intake have the
    lock before its next transaction, labintake.batching.yield_to_intake), and its commit
    ends the report."""
    import threading
    import time

    from labintake.batching import IntakeSignal

    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no database-wide write lock: nothing to report")
    signal = IntakeSignal([0.0, 0.0, 0.0])
    seen: list[float] = []
    locked = threading.Event()

    def hold_the_lock() -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(0.3)
            seen.append(signal.waiting_since)  # intake is waiting right now
            connection.rollback()

    async def go() -> bytes:
        async with Intake(settings, engine, interfaces=KNOWN) as intake:
            intake.writer.on_locked = signal.locked_out
            intake.writer.on_commit = signal.committed
            return await intake.handle(orm("Y1").encode(), PEER)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    locked.wait(5)
    before = time.monotonic()
    ack = asyncio.run(go())
    holder.join()
    assert msa(ack)[1:3] == ["AA", "Y1"]
    assert len(seen) == 1
    assert before <= seen[0] <= time.monotonic()  # the first refusal's time, kept
    assert signal.waiting_since == 0.0  # cleared by the commit
    assert len(stored_rows(engine)) == 1


def test_two_instances_sharing_a_database_store_each_duplicate_once(
    settings: Settings, engine: Engine
) -> None:
    from labintake.db import make_engine

    other_engine = make_engine(settings.database_url)
    messages = [orm(f"TWIN{i}").encode() for i in range(40)]

    async def go() -> tuple[list[bytes], list[bytes]]:
        async with (
            Intake(settings, engine, interfaces=KNOWN) as first,
            Intake(settings, other_engine, interfaces=KNOWN) as second,
        ):
            a = asyncio.gather(*(first.handle(m, PEER) for m in messages))
            b = asyncio.gather(*(second.handle(m, PEER) for m in messages))
            return list(await a), list(await b)

    try:
        acks_first, acks_second = asyncio.run(go())
    finally:
        other_engine.dispose()
    assert acks_first == acks_second  # whichever instance stored it, both answer its ACK
    assert all(msa(a)[1] == "AA" for a in acks_first)
    assert sorted(r["control_id"] for r in stored_rows(engine)) == sorted(
        f"TWIN{i}" for i in range(40)
    )
