"""The logging policy: readable or JSON lines, no patient data, no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from labintake.config import Settings
from labintake.logs import HL7_REDACTED, REDACTED, configure_logging, redact_url

PATIENT_SEGMENT = "PID|1||MRN8812734^^^HOSP^MR||ZYXWVUTSON^QUINTESSA^M||19470213|F"
RAW_MESSAGE = (
    "MSH|^~\\&|EPIC|NORTHCLINIC|LABINTAKE|LAB|20260101120000||ORM^O01|CTRL-1|P|2.5.1\r"
    + PATIENT_SEGMENT
    + "\rORC|NW|PL-1\rOBR|1|PL-1||80053^CMP^C4\r"
)
SECRET = "s3cr3t-signing-key-that-nobody-may-see"
DB_PASSWORD = "pg-pass-9f8e7d"


@pytest.fixture
def log_output() -> Iterator[tuple[io.StringIO, list[Settings]]]:
    """A stream the configured handler writes to; restores the root logger afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    configured: list[Settings] = []
    yield buffer, configured
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved_level)
    logging.captureWarnings(False)


def _configure(
    buffer: io.StringIO, *, log_json: bool, database_url: str = "sqlite:///./var/x.sqlite3"
) -> Settings:
    settings = Settings(
        development=True, secret_key=SECRET, database_url=database_url, log_json=log_json
    )
    configure_logging(settings, stream=buffer)
    return settings


def test_plain_lines_carry_level_logger_message_and_safe_fields(
    log_output: tuple[io.StringIO, list[Settings]],
) -> None:
    buffer, _ = log_output
    _configure(buffer, log_json=False)
    logging.getLogger("labintake.test").info(
        "message stored", extra={"control_id": "CTRL-1", "sending_facility": "NORTHCLINIC"}
    )
    line = buffer.getvalue().strip()
    assert line.endswith(
        "INFO labintake.test message stored control_id=CTRL-1 sending_facility=NORTHCLINIC"
    )
    assert line[:4].isdigit()
    assert line.split(" ", 1)[0].endswith("Z")


def test_json_lines_are_one_object_per_record_with_safe_fields(
    log_output: tuple[io.StringIO, list[Settings]],
) -> None:
    buffer, _ = log_output
    _configure(buffer, log_json=True)
    log = logging.getLogger("labintake.test")
    log.warning("order held", extra={"order_id": 17, "status": "held", "codes": "DX_MISSING"})
    log.info("second")
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["level"] == "WARNING"
    assert first["logger"] == "labintake.test"
    assert first["message"] == "order held"
    assert first["order_id"] == 17
    assert first["status"] == "held"
    assert first["codes"] == "DX_MISSING"
    assert json.loads(lines[1])["message"] == "second"


@pytest.mark.parametrize("log_json", [False, True])
def test_raw_hl7_in_messages_arguments_and_tracebacks_is_redacted(
    log_output: tuple[io.StringIO, list[Settings]], log_json: bool
) -> None:
    buffer, _ = log_output
    _configure(buffer, log_json=log_json)
    log = logging.getLogger("labintake.test")
    log.info("received %s", RAW_MESSAGE)
    log.info("received bytes %r", RAW_MESSAGE.encode())
    try:
        raise ValueError(f"cannot read segment {PATIENT_SEGMENT}")
    except ValueError:
        log.exception("reading failed", extra={"control_id": "CTRL-1"})
    output = buffer.getvalue()
    for patient_value in ("ZYXWVUTSON", "QUINTESSA", "MRN8812734", "19470213"):
        assert patient_value not in output
    assert HL7_REDACTED in output
    assert "CTRL-1" in output  # the control id stays: it is what operators search for
    assert "ValueError" in output  # the traceback is still there, scrubbed


@pytest.mark.parametrize("log_json", [False, True])
def test_extra_fields_outside_the_safe_list_are_written_as_redacted(
    log_output: tuple[io.StringIO, list[Settings]], log_json: bool
) -> None:
    buffer, _ = log_output
    _configure(buffer, log_json=log_json)
    logging.getLogger("labintake.test").info(
        "reading", extra={"patient_name": "ZYXWVUTSON^QUINTESSA", "birth_date": "19470213"}
    )
    output = buffer.getvalue()
    assert "ZYXWVUTSON" not in output
    assert "19470213" not in output
    assert output.count(REDACTED) == 2
    assert "patient_name" in output  # the field's name shows, so it can be reviewed


@pytest.mark.parametrize("log_json", [False, True])
def test_secret_key_and_database_password_never_reach_the_log(
    log_output: tuple[io.StringIO, list[Settings]], log_json: bool
) -> None:
    buffer, _ = log_output
    url = f"postgresql+psycopg://labintake:{DB_PASSWORD}@db.internal:5432/labintake"
    settings = _configure(buffer, log_json=log_json, database_url=url)
    log = logging.getLogger("labintake.test")
    log.info("connecting to %s", settings.database_url)
    log.info("settings: %s", settings)
    log.info("key is %s", settings.secret_key)
    log.info("another service at redis://cache:hunter22@cache.internal/0")
    output = buffer.getvalue()
    assert SECRET not in output
    assert DB_PASSWORD not in output
    assert "hunter22" not in output
    assert "db.internal:5432/labintake" in output  # where it connects is still useful
    assert "cache.internal" in output


def test_web_access_lines_keep_the_path_but_not_query_values(
    log_output: tuple[io.StringIO, list[Settings]],
) -> None:
    buffer, _ = log_output
    _configure(buffer, log_json=False)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        "/api/orders?patient=ZYXWVUTSON&status=held",
        "1.1",
        200,
    )
    output = buffer.getvalue()
    assert "ZYXWVUTSON" not in output
    assert "/api/orders?patient=***&status=***" in output


def test_configuring_twice_keeps_one_handler(
    log_output: tuple[io.StringIO, list[Settings]],
) -> None:
    buffer, _ = log_output
    _configure(buffer, log_json=False)
    _configure(buffer, log_json=False)
    logging.getLogger("labintake.test").info("once")
    assert buffer.getvalue().count("once") == 1


def test_log_level_setting_is_applied(log_output: tuple[io.StringIO, list[Settings]]) -> None:
    buffer, _ = log_output
    settings = Settings(development=True, log_level="warning")
    configure_logging(settings, stream=buffer)
    logging.getLogger("labintake.test").info("not shown")
    logging.getLogger("labintake.test").warning("shown")
    assert "not shown" not in buffer.getvalue()
    assert "shown" in buffer.getvalue()


def test_redact_url_hides_only_the_password() -> None:
    assert (
        redact_url(f"postgresql+psycopg://app:{DB_PASSWORD}@db:5432/lab")
        == "postgresql+psycopg://app:***@db:5432/lab"
    )
    assert redact_url("sqlite:///./var/labintake.sqlite3") == "sqlite:///./var/labintake.sqlite3"


def _order_message(control_id: str) -> bytes:
    return (
        f"MSH|^~\\&|EPIC|NORTHCLINIC|LABINTAKE|LAB|20260101120000||ORM^O01|{control_id}|P|2.5.1\r"
        f"{PATIENT_SEGMENT}\r"
        "ORC|NW|PL-1\rOBR|1|PL-1||80053^CMP^C4\rDG1|1||E11.9^Diabetes^I10\r"
    ).encode()


@pytest.mark.parametrize("log_json", [False, True])
def test_intake_logs_control_ids_and_senders_but_no_patient_data(
    log_output: tuple[io.StringIO, list[Settings]], settings: Settings, log_json: bool
) -> None:
    from labintake.db import make_engine
    from labintake.intake import Intake

    buffer, _ = log_output
    configure_logging(
        settings.model_copy(update={"log_json": log_json, "log_level": "DEBUG"}), stream=buffer
    )
    engine = make_engine(settings.database_url)

    async def send_all() -> list[bytes]:
        async with Intake(settings, engine) as intake:
            return [
                await intake.handle(_order_message("CTRL-LOG-1"), "127.0.0.1:40000"),
                await intake.handle(_order_message("CTRL-LOG-1"), "127.0.0.1:40000"),
                await intake.handle(PATIENT_SEGMENT.encode(), "127.0.0.1:40001"),
                await intake.handle(
                    _order_message("CTRL-LOG-2").replace(b"ORM^O01", b"ADT^A01"),
                    "127.0.0.1:40000",
                ),
            ]

    try:
        acks = asyncio.run(send_all())
    finally:
        engine.dispose()
    assert [b"MSA|AA" in a for a in acks] == [True, True, False, False]
    output = buffer.getvalue()
    assert "CTRL-LOG-1" in output
    assert "CTRL-LOG-2" in output
    assert "EPIC/NORTHCLINIC" in output
    for patient_value in ("ZYXWVUTSON", "QUINTESSA", "MRN8812734", "19470213"):
        assert patient_value not in output, patient_value


def test_at_info_accepted_messages_are_summed_up_and_the_others_get_a_line_each(
    log_output: tuple[io.StringIO, list[Settings]], settings: Settings
) -> None:
    from labintake.db import make_engine
    from labintake.intake import Intake

    buffer, _ = log_output
    configure_logging(settings.model_copy(update={"log_level": "INFO"}), stream=buffer)
    engine = make_engine(settings.database_url)

    async def send_all() -> None:
        async with Intake(settings, engine) as intake:
            for n in range(3):
                await intake.handle(_order_message(f"CTRL-SUM-{n}"), "127.0.0.1:40000")
            await intake.handle(_order_message("CTRL-SUM-0"), "127.0.0.1:40000")
            await intake.handle(
                _order_message("CTRL-SUM-9").replace(b"ORM^O01", b"ADT^A01"), "127.0.0.1:40000"
            )

    try:
        asyncio.run(send_all())
    finally:
        engine.dispose()
    lines = buffer.getvalue().splitlines()
    assert not [line for line in lines if "CTRL-SUM-1" in line]  # accepted: no line of its own
    duplicate = [line for line in lines if "duplicate" in line and "CTRL-SUM-0" in line]
    rejected = [line for line in lines if "CTRL-SUM-9" in line]
    assert len(duplicate) == 1
    assert len(rejected) == 1
    assert "ack_code=AR" in rejected[0]
    assert " stored as rejected " in rejected[0]
    summaries = [line for line in lines if " stored 4 messages in the last " in line]
    assert len(summaries) == 1, lines  # written as intake closed
    assert summaries[0].endswith("s: EPIC/NORTHCLINIC 3 AA, 1 AR (1 duplicate)")


def test_intake_tally_sums_up_each_sender_once_per_period() -> None:
    from labintake.intake.service import IntakeTally

    tally = IntakeTally(started=100.0)
    for _ in range(1200):
        tally.add("NORTHEPIC/NSH", "AA", duplicate=False)
    tally.add("NORTHEPIC/NSH", "AR", duplicate=False)
    tally.add("LAKE/LV", "AA", duplicate=True)
    tally.add("LAKE/LV", "AA", duplicate=True)
    assert not tally.due(159.0)
    assert tally.due(160.0)
    assert tally.summary(160.0) == (
        "stored 1,201 messages in the last 60 s: LAKE/LV 2 duplicates; NORTHEPIC/NSH 1,200 AA, 1 AR"
    )
    assert tally.summary(220.0) is None  # counting starts afresh; nothing came since
    assert not tally.due(250.0)


def test_uvicorn_coloured_copy_of_the_message_is_dropped(
    log_output: tuple[io.StringIO, list[Settings]],
) -> None:
    buffer, _ = log_output
    _configure(buffer, log_json=False)
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 42, extra={"color_message": "Started \x1b[36m%d\x1b[0m"}
    )
    line = buffer.getvalue().strip()
    assert line.endswith("INFO uvicorn.error Started server process [42]")


CONTROL_TEXT = "ESC\x1b[31mred BS\x08 FF\x0c NEL\x85 LS\u2028 CR\rLF\nforged INFO line RLO\u202e"


def test_control_characters_in_plain_lines_are_escaped_not_written_raw(
    log_output: tuple[io.StringIO, list[Settings]],
) -> None:
    buffer, _ = log_output
    _configure(buffer, log_json=False)
    logging.getLogger("labintake.test").warning(
        "from the sender: %s", CONTROL_TEXT, extra={"sending_facility": CONTROL_TEXT}
    )
    output = buffer.getvalue()
    assert output.count("\n") == 1
    assert output.endswith("\n")
    line = output.rstrip("\n")
    for raw in ("\x1b", "\x08", "\x0c", "\x85", "\u2028", "\r", "\n", "\u202e"):
        assert raw not in line, repr(raw)
    assert len(line.splitlines()) == 1
    for shown in ("\\x1b[31m", "\\x08", "\\x0c", "\\x85", "\\u2028", "\\r", "\\n", "\\u202e"):
        assert line.count(shown) == 2, shown  # in the message and in the field


def test_json_lines_keep_control_characters_escaped_and_readable(
    log_output: tuple[io.StringIO, list[Settings]],
) -> None:
    buffer, _ = log_output
    _configure(buffer, log_json=True)
    logging.getLogger("labintake.test").warning("from the sender: %s", CONTROL_TEXT)
    output = buffer.getvalue()
    assert len(output.splitlines()) == 1
    assert json.loads(output)["message"] == f"from the sender: {CONTROL_TEXT}"
