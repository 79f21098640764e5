"""The MLLP client: a small reusable async client, and `labintake send`.

:class:`MLLPClient` keeps one persistent connection and sends messages one after the
other, returning each acknowledgement. :func:`send_files` is the command: it reads files
(several messages each, or FHS/BHS batches), sends them over one connection and prints the
control id and MSA-1 of every reply, with the error text when the reply is not AA/CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from labintake.errors import HeaderError, HL7Error
from labintake.hl7.batch import split_messages
from labintake.hl7.header import parse_header
from labintake.mllp.framing import BrokenFrame, FrameDecoder, OversizedMessage, frame

ACCEPTED_CODES = frozenset({"AA", "CA"})
MAX_ACK_BYTES = 1024 * 1024


def client_tls_context(
    ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """TLS for a client: verify the server (against `ca`, else the system's CAs), and present
    `cert`/`key` when the server asks for a client certificate."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


class MLLPClient:
    """One persistent MLLP connection: ``await client.send(message)`` returns the ACK bytes."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = FrameDecoder(MAX_ACK_BYTES)
        self._replies: deque[bytes] = deque()

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.ssl_context,
                server_hostname=self.host if self.ssl_context else None,
            ),
            self.timeout,
        )
        self._decoder = FrameDecoder(MAX_ACK_BYTES)
        self._replies.clear()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):  # the server went first
                await writer.wait_closed()

    async def __aenter__(self) -> MLLPClient:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def write(self, message: bytes) -> None:
        """Send one message without waiting (pair with :meth:`read_reply`)."""
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(frame(message))

    async def read_reply(self) -> bytes:
        """The next acknowledgement from the server (raises TimeoutError, ConnectionError)."""
        async with asyncio.timeout(self.timeout):
            while not self._replies:
                if self._reader is None:
                    raise ConnectionError("not connected")
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                for event in self._decoder.feed(data):
                    if isinstance(event, bytes):
                        self._replies.append(event)
                    elif isinstance(event, OversizedMessage | BrokenFrame):
                        raise ConnectionError("unreadable reply from the server")
        return self._replies.popleft()

    async def send(self, message: bytes) -> bytes:
        """Send one message and wait for its acknowledgement."""
        self.write(message)
        assert self._writer is not None
        await self._writer.drain()
        return await self.read_reply()


@dataclass(frozen=True, slots=True)
class AckSummary:
    """MSA-1, MSA-2 and the error text of an acknowledgement."""

    code: str
    control_id: str
    text: str


def summarize_ack(ack: bytes) -> AckSummary:
    """Read MSA-1/MSA-2 and the error text (ERR-8, else ERR-3.2, else MSA-3) of an ACK."""
    text = ack.decode("utf-8", "replace").replace("\r\n", "\r").replace("\n", "\r")
    separator = text[3:4] if text.startswith("MSH") else "|"
    component = text[4:5] if len(text) > 4 else "^"
    code = control_id = msa_text = err_text = ""
    for segment in text.split("\r"):
        fields = segment.split(separator)
        if fields[0] == "MSA":
            code = fields[1] if len(fields) > 1 else ""
            control_id = fields[2] if len(fields) > 2 else ""
            msa_text = fields[3] if len(fields) > 3 else ""
        elif fields[0] == "ERR" and not err_text:
            if len(fields) > 8 and fields[8]:
                err_text = fields[8]
            elif len(fields) > 3 and fields[3]:
                parts = fields[3].split(component)
                err_text = parts[1] if len(parts) > 1 else parts[0]
    escape = text[6:7] if len(text) > 6 else "\\"
    shown = _unescape(err_text or msa_text, separator, text[4:8], escape)
    return AckSummary(code, control_id, shown)


def _unescape(value: str, separator: str, encoding: str, escape: str) -> str:
    """Delimiter escapes (\\F\\, \\S\\, \\R\\, \\T\\, \\E\\) back to characters, for display."""
    if escape not in value:
        return value
    delimiters = {"F": separator, "S": encoding[:1], "R": encoding[1:2], "T": encoding[3:4]}
    for code, char in delimiters.items():
        if char:
            value = value.replace(f"{escape}{code}{escape}", char)
    return value.replace(f"{escape}E{escape}", escape)


def _asks_no_ack(message: bytes) -> bool:
    try:
        return parse_header(message).accept_ack_type == "NE"
    except HeaderError:
        return False


def _control_id(message: bytes) -> str:
    try:
        return parse_header(message).control_id or "(no control id)"
    except HeaderError:
        return "(no MSH)"


async def _send_all(
    files: Iterable[Path],
    host: str,
    port: int,
    timeout: float,
    echo: Callable[[str], object],
    ssl_context: ssl.SSLContext | None,
) -> int:
    failures = 0
    client = MLLPClient(host, port, timeout=timeout, ssl_context=ssl_context)
    try:
        for path in files:
            try:
                split = split_messages(path.read_bytes())
            except (OSError, HL7Error) as exc:
                echo(f"{path}: cannot read: {exc}")
                failures += 1
                continue
            for warning in split.warnings:
                echo(f"{path}: warning: {warning}")
            if not split.messages:
                echo(f"{path}: no messages found")
                failures += 1
            for message in split.messages:
                control_id = _control_id(message)
                try:
                    if not client.connected:
                        await client.connect()
                    if _asks_no_ack(message):
                        client.write(message)
                        echo(f"{path}: {control_id} sent (MSH-15 NE: no acknowledgement asked)")
                        continue
                    ack = await client.send(message)
                except (OSError, TimeoutError, ssl.SSLError) as exc:
                    reason = "no reply in time" if isinstance(exc, TimeoutError) else exc
                    echo(f"{path}: {control_id} FAILED ({reason})")
                    failures += 1
                    await client.close()
                    continue
                summary = summarize_ack(ack)
                if summary.code in ACCEPTED_CODES:
                    echo(f"{path}: {control_id} {summary.code}")
                else:
                    failures += 1
                    echo(f"{path}: {control_id} {summary.code or '(no MSA-1)'} {summary.text}")
    finally:
        await client.close()
    return failures


def send_files(
    files: Iterable[Path],
    host: str = "127.0.0.1",
    port: int = 2575,
    timeout: float = 30.0,
    echo: Callable[[str], object] = print,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Send every message of `files` over one connection; returns the number of failures."""
    return asyncio.run(_send_all(list(files), host, port, timeout, echo, ssl_context))
