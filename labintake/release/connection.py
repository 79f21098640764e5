"""A persistent MLLP client connection: send one message, wait for its ACK, with timeouts.

Transport only: no database here. Failures are :class:`DeliveryFailure` with a short reason
(refused, reset, timeout...) that the sender records and retries on. The sender talks to a
:class:`Transport`; :class:`LisConnection` is the one the service uses, and tests hand in one
that answers from memory.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from labintake.errors import LabintakeError
from labintake.hl7.ack_reply import AckReply, UnreadableAck, read_ack
from labintake.mllp.framing import FrameDecoder, frame

MAX_ACK_BYTES = 1024 * 1024


class DeliveryFailure(LabintakeError):
    """The message may not have reached the receiver: retry it (same control id).

    `unreachable` is True when no connection could be made at all (nothing was sent).
    """

    def __init__(self, text: str, *, unreachable: bool = False) -> None:
        super().__init__(text)
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    connect_timeout: float = 10.0
    ack_timeout: float = 30.0

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
        if self.tls_cert is not None:
            context.load_cert_chain(str(self.tls_cert), str(self.tls_key) if self.tls_key else None)
        return context


def parse_ack(raw: bytes) -> AckReply:
    """The acknowledgement in `raw` (:func:`labintake.hl7.ack_reply.read_ack`); bytes that
    are not one are a DeliveryFailure."""
    try:
        return read_ack(raw)
    except UnreadableAck as exc:
        raise DeliveryFailure(str(exc)) from exc


class Transport(Protocol):
    """What the sender needs of a connection to its receiver."""

    def exchange(self, message: bytes, control_id: str) -> AckReply:
        """Send `message`, return the receiver's acknowledgement of `control_id`; raise
        DeliveryFailure when it may not have arrived."""
        ...

    def close(self) -> None: ...


class LisConnection:
    """One connection to the receiver, opened on first use and kept open between messages."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder(MAX_ACK_BYTES)
        self._context = endpoint.ssl_context()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def _open(self) -> socket.socket:
        endpoint = self.endpoint
        try:
            sock = socket.create_connection(
                (endpoint.host, endpoint.port), timeout=endpoint.connect_timeout
            )
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=endpoint.host)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryFailure(
                f"cannot connect to {endpoint.host}:{endpoint.port}: {exc}", unreachable=True
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._decoder = FrameDecoder(MAX_ACK_BYTES)
        return sock

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def exchange(self, message: bytes, control_id: str) -> AckReply:
        """Send `message` and wait for the ACK whose MSA-2 is `control_id`.

        On any failure the connection is closed (a late ACK must not be taken for the next
        message's) and DeliveryFailure is raised.
        """
        if self._sock is None:
            self._sock = self._open()
        sock = self._sock
        deadline = time.monotonic() + self.endpoint.ack_timeout
        try:
            sock.sendall(frame(message))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeliveryFailure(
                        f"no acknowledgement within {self.endpoint.ack_timeout:g} s"
                    )
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    raise DeliveryFailure("connection closed by the receiver")
                for event in self._decoder.feed(data):
                    if not isinstance(event, bytes):
                        continue  # broken or oversized frames: not our acknowledgement
                    reply = parse_ack(event)
                    if reply.control_id in ("", control_id):
                        return reply
        except TimeoutError as exc:
            self.close()
            raise DeliveryFailure(
                f"no acknowledgement within {self.endpoint.ack_timeout:g} s"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise DeliveryFailure(f"connection failed: {exc}") from exc
        except DeliveryFailure:
            self.close()
            raise
