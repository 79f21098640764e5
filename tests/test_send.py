"""`labintake send`: files of several messages and FHS/BHS batches, over one connection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mllp_messages import orm, running_server, stored_rows
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from labintake.cli import app
from labintake.config import Settings
from labintake.errors import HL7Error
from labintake.hl7.batch import split_messages
from labintake.mllp.client import send_files, summarize_ack


def test_messages_separated_by_blank_lines_or_msh_are_split() -> None:
    data = (orm("A1", separator="\n") + "\n\n" + orm("A2", separator="\r\n") + orm("A3")).encode()
    split = split_messages(data)
    assert len(split.messages) == 3
    assert split.messages[0] == orm("A1").encode()
    assert all(b"\n" not in m for m in split.messages)


def test_batch_envelope_is_dropped_and_counts_checked() -> None:
    batch = (
        "FHS|^~\\&|EPIC|NORTHSIDE\nBHS|^~\\&|EPIC|NORTHSIDE\n"
        + orm("B1", separator="\n")
        + orm("B2", separator="\n")
        + "BTS|3\nFTS|1\n"
    )
    split = split_messages(batch.encode())
    assert split.batches == 1
    assert [m[:3] for m in split.messages] == [b"MSH", b"MSH"]
    assert split.warnings == ["line 19: BTS-1 says 3 messages, the batch holds 2"]


def test_text_before_the_first_msh_is_an_error() -> None:
    with pytest.raises(HL7Error, match="line 1: segment 'PID' outside any message"):
        split_messages(b"PID|1\r" + orm().encode())


def test_ack_summary_reads_code_and_unescaped_error_text() -> None:
    ack = (
        b"MSH|^~\\&|A|B|C|D|1||ACK^O01^ACK|9|P|2.5.1\rMSA|AR|C1\r"
        b"ERR||MSH^1^9|200^x^HL70357|E||||ADT\\S\\A01 no\r"
    )
    summary = summarize_ack(ack)
    assert (summary.code, summary.control_id, summary.text) == ("AR", "C1", "ADT^A01 no")


def test_send_files_reports_each_ack_and_counts_failures(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    several = tmp_path / "several.hl7"
    several.write_text(
        orm("F1", separator="\n")
        + "\n"
        + orm("F2", separator="\n")
        + "\n"
        + orm("F3", message_type="ADT^A01", separator="\n")
    )
    batch = tmp_path / "batch.hl7"
    batch.write_text("FHS|^~\\&|EPIC\rBHS|^~\\&|EPIC\r" + orm("F4") + orm("F5") + "BTS|2\rFTS|1\r")
    lines: list[str] = []

    async def go() -> int:
        async with running_server(settings, engine) as server:
            return await asyncio.to_thread(
                send_files, [several, batch], "127.0.0.1", server.bound_port, 10.0, lines.append
            )

    failures = asyncio.run(go())
    assert failures == 1
    assert lines[:2] == [f"{several}: F1 AA", f"{several}: F2 AA"]
    assert lines[2].startswith(f"{several}: F3 AR message type ADT^A01 is not accepted")
    assert lines[3:] == [f"{batch}: F4 AA", f"{batch}: F5 AA"]
    assert sorted(r["control_id"] for r in stored_rows(engine)) == ["F1", "F2", "F3", "F4", "F5"]


def test_send_command_exit_code_and_output(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    good = tmp_path / "good.hl7"
    good.write_text(orm("CLI1"))

    async def go() -> tuple[int, str]:
        async with running_server(settings, engine) as server:
            args = ["send", str(good), "--port", str(server.bound_port)]
            result = await asyncio.to_thread(CliRunner().invoke, app, args)
            return result.exit_code, result.output

    exit_code, output = asyncio.run(go())
    assert (exit_code, output.strip()) == (0, f"{good}: CLI1 AA")


def test_send_without_a_listener_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "one.hl7"
    path.write_text(orm("N1"))
    lines: list[str] = []
    # Port 9 (discard) on localhost is closed on any test machine: connection refused.
    assert send_files([path], "127.0.0.1", 9, 2.0, lines.append) == 1
    assert lines[0].startswith(f"{path}: N1 FAILED")


def test_message_asking_for_no_ack_is_sent_without_waiting(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "never.hl7"
    path.write_text(orm("NE1", accept_ack="NE", application_ack="NE") + orm("NE2"))
    lines: list[str] = []

    async def go() -> int:
        async with running_server(settings, engine) as server:
            return await asyncio.to_thread(
                send_files, [path], "127.0.0.1", server.bound_port, 5.0, lines.append
            )

    assert asyncio.run(go()) == 0
    assert lines == [
        f"{path}: NE1 sent (MSH-15 NE: no acknowledgement asked)",
        f"{path}: NE2 AA",
    ]
    assert sorted(r["control_id"] for r in stored_rows(engine)) == ["NE1", "NE2"]
