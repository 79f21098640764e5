"""A small LIS stand-in: receives orders over MLLP, logs them, and acknowledges each.

Used by `labintake serve --demo` when no LIS is configured, by the tests (as the real peer
of the sender) and by the release benchmark. It recognises a repeated message control id
and acknowledges it again without taking the order twice, as a real LIS should. Tests can
make it answer AE, stay silent, answer slowly, or go down and come back.

    python -m labintake.release.stub_lis --port 2576
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import socketserver
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from labintake.errors import HL7Error
from labintake.hl7.ack import build_ack
from labintake.hl7.header import Header, parse_header
from labintake.hl7.segments import split_segments
from labintake.mllp.framing import FrameDecoder, frame

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    control_id: str
    message_type: str
    patient_id: str
    placer_order: str
    tests: tuple[str, ...]
    raw: bytes
    repeat: bool


# A responder decides the answer: (ACK code, error text), or None to stay silent.
Responder = Callable[[ReceivedMessage], tuple[str, str] | None]


def _summary(raw: bytes, seen: Counter[str]) -> tuple[ReceivedMessage, Header]:
    header = parse_header(raw)
    segments = split_segments(raw.decode("utf-8", errors="replace"))
    patient = ""
    placer = ""
    tests: list[str] = []
    for segment in segments:
        if segment.name == "PID" and not patient:
            patient = segment.text(3, 1)
        elif segment.name == "OBR":
            tests.append(segment.text(4, 1))
            placer = placer or segment.text(2, 1)
    received = ReceivedMessage(
        control_id=header.control_id,
        message_type=header.message_code,
        patient_id=patient,
        placer_order=placer,
        tests=tuple(tests),
        raw=raw,
        repeat=seen[header.control_id] > 0,
    )
    return received, header


@dataclass
class _State:
    received: list[ReceivedMessage] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class StubLis:
    """An MLLP receiver in a background thread. `port=0` picks a free port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        responder: Responder | None = None,
        delay_seconds: float = 0.0,
        log_messages: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.responder = responder
        self.delay_seconds = delay_seconds
        self.log_messages = log_messages
        self.ssl_context = ssl_context
        self.state = _State()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- what arrived -------------------------------------------------------------------
    @property
    def received(self) -> list[ReceivedMessage]:
        with self.state.lock:
            return list(self.state.received)

    def accepted(self) -> list[ReceivedMessage]:
        """Each message taken once: repeats of a control id are left out."""
        return [m for m in self.received if not m.repeat]

    def counts(self) -> Counter[str]:
        """How many times each control id arrived (repeats included)."""
        with self.state.lock:
            return Counter(self.state.seen)

    @property
    def open_connections(self) -> int:
        """Connections being served now (a closed peer's last message is answered first)."""
        return len(self._connections)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> StubLis:
        stub = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                stub._serve_connection(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        log.info("stub LIS listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        """Close the listener and every open connection (the LIS goes down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._connections.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StubLis:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- one connection -----------------------------------------------------------------
    def _serve_connection(self, conn: socket.socket) -> None:
        if self.ssl_context is not None:
            try:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.warning("stub LIS: TLS handshake failed: %s", exc)
                conn.close()
                return
        self._connections.add(conn)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        decoder = FrameDecoder(16 * 1024 * 1024)
        try:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in decoder.feed(data):
                    if isinstance(event, bytes):
                        reply = self._answer(event)
                        if reply is not None:
                            conn.sendall(frame(reply))
        except OSError:
            return
        finally:
            self._connections.discard(conn)
            conn.close()

    def _answer(self, raw: bytes) -> bytes | None:
        try:
            with self.state.lock:
                received, header = _summary(raw, self.state.seen)
        except HL7Error:
            log.warning("stub LIS: unreadable message (%d bytes)", len(raw))
            return None
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        decision = self.responder(received) if self.responder else ("AA", "")
        if decision is None:
            return None
        code, error_text = decision
        with self.state.lock:
            if code in ("AA", "CA"):
                self.state.received.append(received)
                self.state.seen[received.control_id] += 1
        if self.log_messages:
            log.info(
                "stub LIS received %s %s placer=%s tests=%s%s -> %s",
                received.message_type,
                received.control_id,
                received.placer_order,
                ",".join(received.tests),
                " (repeat)" if received.repeat else "",
                code,
            )
        return build_ack(header, code, HL7Error(error_text) if error_text else None)


def main() -> None:
    parser = argparse.ArgumentParser(description="A stub LIS that acknowledges HL7 orders.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2576)
    parser.add_argument("--quiet", action="store_true", help="do not log each message")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # SIGTERM as well as SIGINT: as a container's first process (the compose file's stub-lis)
    # it would otherwise ignore the engine's SIGTERM and be killed after the stop timeout.
    # Blocked before the server's threads start (they inherit the mask) and taken by sigwait
    # here: no handler. A handler setting an Event could deadlock on the Event's own lock,
    # held by this thread while it enters Event.wait.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    stub = StubLis(args.host, args.port, log_messages=not args.quiet).start()
    print(f"stub LIS listening on {args.host}:{stub.port}", flush=True)
    signal.sigwait(stop_signals)
    stub.stop()


if __name__ == "__main__":
    main()
