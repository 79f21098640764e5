"""The MLLP listener: connections and framing only; every message goes to one intake function.

Persistent connections carry many messages; replies go back in the order the messages came.
Several messages arriving in one read are handed to intake together (so they share a
commit) and answered in order. Limits keep one connection from hurting the others: the
message size limit (in the frame decoder), an idle timeout, a frame deadline, a maximum
number of connections and a maximum per peer address (further ones are closed at once, with
a log line). Nothing a peer sends can stop the listener: errors end that connection only.

Slow peers: only bytes of a frame count as activity, so stray bytes between frames (a
newline every few seconds) do not keep an idle connection open; and a frame must end within
``frame_timeout`` of its start block, so dribbling a message byte by byte does not either.
Each connection tells intake who it is (:class:`PeerIdentity`: the address and, over TLS
with client certificates, the verified certificate subject) so that intake can hold each
message's MSH-3/MSH-4 against what the connection proved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from labintake.mllp.framing import (
    FRAME_END,
    START_BLOCK,
    BrokenFrame,
    FrameDecoder,
    OversizedMessage,
)

log = logging.getLogger("labintake.mllp")

READ_SIZE = 65536
# Above this many unsent bytes, wait for the peer to read before taking more messages.
WRITE_HIGH_WATER = 256 * 1024


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What a connection proves about its sender: its address, and over TLS with a client
    CA, the subject of the certificate the handshake verified (RFC 4514 form, e.g.
    ``CN=northside-epic,O=Northside Hospital``); None without a verified certificate."""

    address: str
    certificate_subject: str | None = None

    @property
    def certificate_common_name(self) -> str | None:
        subject = self.certificate_subject
        if not subject:
            return None
        for part in subject.split(","):
            key, _, value = part.partition("=")
            if key.strip().upper() == "CN":
                return value.strip()
        return None


class MessageHandler(Protocol):
    """What the server needs from intake."""

    def handle(
        self, frame: bytes, peer: str, identity: PeerIdentity | None = None
    ) -> Awaitable[bytes]: ...

    def handle_oversized(self, message: OversizedMessage, peer: str) -> bytes: ...


def server_tls_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """TLS for the listener; with `client_ca`, clients must present a certificate it signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _peer_name(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address or "unknown")


def _peer_identity(writer: asyncio.StreamWriter) -> PeerIdentity:
    address = writer.get_extra_info("peername")
    host = str(address[0]) if isinstance(address, tuple) and address else str(address or "")
    subject: str | None = None
    ssl_object = writer.get_extra_info("ssl_object")
    if isinstance(ssl_object, ssl.SSLObject):
        # Only a certificate the handshake verified (CERT_REQUIRED) is given back here.
        certificate = ssl_object.getpeercert()
        if certificate:
            subject = _subject_text(certificate.get("subject", ()))
    return PeerIdentity(host, subject)


def _subject_text(subject: object) -> str | None:
    """``((('commonName', 'x'),), ...)`` from :meth:`ssl.SSLObject.getpeercert` as RFC 4514
    text, most specific first (``CN=x,O=y``)."""
    names = {
        "commonName": "CN",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "countryName": "C",
        "stateOrProvinceName": "ST",
        "localityName": "L",
        "domainComponent": "DC",
        "emailAddress": "emailAddress",
    }
    parts: list[str] = []
    if not isinstance(subject, tuple):
        return None
    for rdn in subject:
        for attribute in rdn:
            key, value = attribute
            parts.append(f"{names.get(key, key)}={value}")
    return ",".join(reversed(parts)) if parts else None


class MLLPServer:
    """An asyncio MLLP listener in front of a :class:`MessageHandler`."""

    def __init__(
        self,
        handler: MessageHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 2575,
        max_message_bytes: int = 1024 * 1024,
        idle_timeout: float = 300.0,
        max_connections: int = 200,
        max_connections_per_peer: int = 20,
        frame_timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_connections_per_peer = max_connections_per_peer
        self.frame_timeout = frame_timeout
        self.ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._streams: dict[
            asyncio.Task[None], tuple[asyncio.StreamReader, asyncio.StreamWriter]
        ] = {}
        self._per_peer: dict[str, int] = {}
        self.messages = 0
        self.refused_connections = 0
        self.slow_connections_closed = 0

    @property
    def bound_port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            return self.port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        return len(self._streams)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept,
            self.host,
            self.port,
            ssl=self.ssl_context,
            ssl_handshake_timeout=min(self.idle_timeout, 30.0) if self.ssl_context else None,
            limit=READ_SIZE,
            reuse_address=True,
        )

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, answer the messages already read, then close every connection."""
        if self._server is None:
            return
        self._server.close()
        for reader, writer in list(self._streams.values()):
            # No more bytes from the peers; each connection ends after its current message.
            with contextlib.suppress(RuntimeError, AttributeError):  # closing already
                cast(asyncio.Transport, writer.transport).pause_reading()
            reader.feed_eof()
        tasks = list(self._streams)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_name(writer)
        if len(self._streams) >= self.max_connections:
            self.refused_connections += 1
            log.warning(
                "connection refused: too many connections",
                extra={"peer": peer, "count": len(self._streams)},
            )
            writer.close()
            return
        identity = _peer_identity(writer)
        from_peer = self._per_peer.get(identity.address, 0)
        if from_peer >= self.max_connections_per_peer:
            self.refused_connections += 1
            log.warning(
                "connection refused: too many connections from this address",
                extra={"peer": peer, "count": from_peer},
            )
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._streams[task] = (reader, writer)
        self._per_peer[identity.address] = from_peer + 1
        log.info("connection opened", extra={"peer": peer})
        try:
            await self._serve(reader, writer, peer, identity)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("connection lost", extra={"peer": peer, "reason": type(exc).__name__})
        except asyncio.CancelledError:
            log.info("connection cancelled at shutdown", extra={"peer": peer})
        except Exception:
            log.exception("connection failed", extra={"peer": peer})
        finally:
            self._streams.pop(task, None)
            left = self._per_peer.get(identity.address, 1) - 1
            if left > 0:
                self._per_peer[identity.address] = left
            else:
                self._per_peer.pop(identity.address, None)
            writer.close()
            # The peer may be gone already; closing is best effort.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            log.info("connection closed", extra={"peer": peer})

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        identity: PeerIdentity,
    ) -> None:
        decoder = FrameDecoder(self.max_message_bytes)
        loop = asyncio.get_running_loop()
        # Monotonic times: the last byte of a frame, and the start block of the open frame.
        last_activity = time.monotonic()
        frame_started: float | None = None

        def check_deadlines() -> None:
            now = time.monotonic()
            if frame_started is not None and now - frame_started >= self.frame_timeout:
                self.slow_connections_closed += 1
                log.warning(
                    "connection closed: message not completed within the frame deadline",
                    extra={"peer": peer, "timeout_seconds": self.frame_timeout},
                )
                writer.transport.abort()
                return
            if now - last_activity >= self.idle_timeout:
                log.info("idle connection closed", extra={"peer": peer})
                writer.transport.abort()
                return
            due = last_activity + self.idle_timeout
            if frame_started is not None:
                due = min(due, frame_started + self.frame_timeout)
            timer[0] = loop.call_later(max(due - now, 0.0), check_deadlines)

        timer = [loop.call_later(min(self.idle_timeout, self.frame_timeout), check_deadlines)]
        handle = self.handler.handle
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    return
                was_in_frame = decoder.in_frame
                stray_before = decoder.stray_bytes
                events = decoder.feed(data)
                if was_in_frame or decoder.stray_bytes - stray_before < len(data):
                    last_activity = time.monotonic()  # bytes of a frame, not noise between
                started_before = frame_started
                if events:
                    frame_started = time.monotonic() if decoder.in_frame else None
                elif decoder.in_frame and frame_started is None:
                    frame_started = time.monotonic()
                if frame_started is not None and frame_started != started_before:
                    timer[0].cancel()  # a frame began: its deadline may come before the idle one
                    check_deadlines()
                if not events:
                    continue
                replies = await self._replies(events, peer, identity, handle)
                if replies and not writer.is_closing():
                    writer.write(replies)
                    if writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                        await writer.drain()
                last_activity = time.monotonic()
        finally:
            timer[0].cancel()

    async def _replies(
        self,
        events: list[bytes | OversizedMessage | BrokenFrame],
        peer: str,
        identity: PeerIdentity,
        handle: Callable[[bytes, str, PeerIdentity | None], Awaitable[bytes]],
    ) -> bytes:
        if len(events) == 1 and type(events[0]) is bytes:
            self.messages += 1
            ack = await handle(events[0], peer, identity)
            return START_BLOCK + ack + FRAME_END if ack else b""
        pending: list[Awaitable[bytes]] = []
        for event in events:
            if isinstance(event, bytes):
                self.messages += 1
                pending.append(handle(event, peer, identity))
            elif isinstance(event, OversizedMessage):
                pending.append(_ready(self.handler.handle_oversized(event, peer)))
            else:
                log.warning("unterminated frame dropped", extra={"peer": peer, "size": event.size})
        acks = await asyncio.gather(*pending)
        return b"".join(START_BLOCK + ack + FRAME_END for ack in acks if ack)


async def _ready(value: bytes) -> bytes:
    return value
