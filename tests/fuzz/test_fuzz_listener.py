"""Hostile messages against a running MLLP listener (real sockets, real SQLite database).

Each generated message is sent as one frame on a shared connection, followed by a well-formed
probe. Properties: the hostile frame gets at most one reply (none only when its MSH-15 asked
for none), or the connection is closed cleanly; the probe behind it is still answered AA; a
second, well-behaved connection keeps getting AA throughout; the listener still takes new
connections at the end; every probe that got AA is stored exactly once.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from labintake.config import Settings
from labintake.db import make_engine
from labintake.errors import HeaderError
from labintake.hl7.header import parse_header
from labintake.intake import Intake
from labintake.interfaces import load_interfaces
from labintake.mllp.framing import END_BLOCK, START_BLOCK, FrameDecoder, frame, normalise_segments
from labintake.mllp.server import MLLPServer
from tests.fuzz.mutations import fuzz_settings, hostile_messages

REPO = Path(__file__).resolve().parents[2]
LIMIT = 64 * 1024
TIMEOUT = 10.0


def valid_message(control_id: str) -> bytes:
    return (
        f"MSH|^~\\&|FUZZPROBE|PROBECLINIC|LABINTAKE|LAB|20260101120000||ORM^O01|{control_id}|"
        "P|2.5.1\r"
        "PID|1||PRB1^^^PROBECLINIC^MR||PROBE^PAT||19700101|F\r"
        "ORC|NW|PRB-1\rOBR|1|PRB-1||85025^CBC^CPT4\rDG1|1||D64.9^Anemia^I10\r"
    ).encode()


def msa(reply: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an acknowledgement."""
    for segment in reply.decode("latin-1").split("\r"):
        if segment.startswith("MSA") and len(segment) > 3:
            fields = segment.split(segment[3])
            return (fields[1] if len(fields) > 1 else "", fields[2] if len(fields) > 2 else "")
    raise AssertionError(f"reply without MSA: {reply[:200]!r}")


class Connection:
    """A blocking MLLP client connection that reads replies one frame at a time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.decoder = FrameDecoder(16 * 1024 * 1024)
        self.replies: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_reply(self) -> bytes | None:
        """The next reply frame, or None when the server closed the connection."""
        while not self.replies:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return None
            self.replies.extend(e for e in self.decoder.feed(data) if isinstance(e, bytes))
        return self.replies.pop(0)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Listener:
    port: int
    server: MLLPServer
    loop: asyncio.AbstractEventLoop


@pytest.fixture
def listener(sqlite_url: str) -> Iterator[Listener]:
    settings = Settings(
        development=True,
        database_url=sqlite_url,
        interfaces_dir=REPO / "interfaces",
        max_message_bytes=LIMIT,
        idle_timeout_seconds=60,
    )
    engine = make_engine(sqlite_url)
    intake = Intake(settings, engine, interfaces=load_interfaces(settings.interfaces_dir))
    intake.start()
    server = MLLPServer(intake, host="127.0.0.1", port=0, max_message_bytes=LIMIT)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield Listener(server.bound_port, server, loop)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(grace=5.0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        intake.close()
        engine.dispose()


@dataclass
class WellBehavedSender:
    """Sends valid orders on its own connection until stopped; every reply must be AA."""

    port: int
    sent: int = 0
    accepted: int = 0
    problems: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        connection = Connection(self.port)
        try:
            while not self.stop.is_set():
                control_id = f"CALM-{uuid.uuid4().hex[:12]}"
                connection.send(frame(valid_message(control_id)))
                self.sent += 1
                started = time.monotonic()
                reply = connection.next_reply()
                if reply is None:
                    self.problems.append(f"{control_id}: connection closed")
                    return
                if msa(reply) != ("AA", control_id):
                    self.problems.append(f"{control_id}: {msa(reply)}")
                else:
                    self.accepted += 1
                if time.monotonic() - started > 5.0:
                    self.problems.append(f"{control_id}: answered after 5 s")
                time.sleep(0.005)
        except OSError as exc:
            self.problems.append(f"socket error: {exc!r}")
        finally:
            connection.close()


@dataclass
class Progress:
    connection: Connection
    cases: int = 0
    closes: int = 0


def _reply_may_be_omitted(raw: bytes) -> bool:
    """The sender's MSH-15 (enhanced mode) may ask for no commit acknowledgement."""
    try:
        header = parse_header(normalise_segments(raw))
    except HeaderError:
        return False
    return header.enhanced_mode and header.accept_ack_type in {"NE", "ER", "SU"}


def test_listener_answers_every_hostile_frame_and_other_connections_are_unaffected(
    listener: Listener, sqlite_url: str, record_property: pytest.RecordProperty
) -> None:
    calm = WellBehavedSender(listener.port)
    calm_thread = threading.Thread(target=calm.run, daemon=True)
    calm_thread.start()
    state = Progress(Connection(listener.port))
    probes_accepted: list[str] = []

    oversized = st.integers(LIMIT + 1, 4 * LIMIT).map(
        lambda n: valid_message("BIG").replace(b"PID|1||", b"PID|1||" + b"X" * n, 1)
    )

    @fuzz_settings(2000)
    @given(raw=hostile_messages() | oversized)
    def run(raw: bytes) -> None:
        state.cases += 1
        body = raw.replace(START_BLOCK, b"").replace(END_BLOCK, b"")
        connection = state.connection
        probe = f"PROBE-{uuid.uuid4().hex[:12]}"
        connection.send(frame(body) + frame(valid_message(probe)))
        replies = []
        closed = False
        while True:
            reply = connection.next_reply()
            if reply is None:
                # A clean close is an allowed answer; a new connection must work at once.
                state.closes += 1
                closed = True
                connection.close()
                connection = state.connection = Connection(listener.port)
                connection.send(frame(valid_message(probe)))
                reply = connection.next_reply()
                assert reply is not None, "a fresh connection was closed without a reply"
                assert msa(reply) == ("AA", probe)
                break
            if msa(reply)[1] == probe:
                assert msa(reply)[0] == "AA"
                break
            replies.append(reply)
        probes_accepted.append(probe)
        assert len(replies) <= 1, replies
        if not replies and not closed:
            assert _reply_may_be_omitted(body), body[:300]
        for reply in replies:
            assert msa(reply)[0] in {"AA", "AE", "AR", "CA", "CE", "CR"}

    try:
        run()
    finally:
        calm.stop.set()
        calm_thread.join(30)
        state.connection.close()

    assert calm.problems == []
    assert calm.accepted == calm.sent > 0
    fresh = Connection(listener.port)
    try:
        fresh.send(frame(valid_message("FINAL-" + uuid.uuid4().hex[:8])))
        final = fresh.next_reply()
        assert final is not None
        assert msa(final)[0] == "AA"
    finally:
        fresh.close()

    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text(
                    "SELECT control_id, count(*) FROM inbound_message "
                    "WHERE sending_application = 'FUZZPROBE' GROUP BY control_id"
                )
            ).all()
    finally:
        engine.dispose()
    counts = dict(stored)
    missing = [p for p in probes_accepted if counts.get(p) != 1]
    assert missing == []
    print(
        f"listener fuzz: {state.cases} hostile frames, {len(probes_accepted)} probes AA and "
        f"stored once, {state.closes} clean closes, well-behaved connection "
        f"{calm.accepted}/{calm.sent} AA"
    )
    record_property("fuzz_cases", state.cases)
