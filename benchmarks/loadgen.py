"""Closed-loop MLLP load: many connections, each sending a message and waiting for its ACK.

Each connection takes the next message from a shared source, writes it, waits for the ACK,
records the time from write to ACK, and only then sends the next one (closed loop: the
offered load is exactly what the server can acknowledge). A run ends when the messages run
out, the duration is over, or, with ``stop_on_error``, a connection fails.

``rate`` paces the load: message n (counted over all connections) is not written before
n / rate seconds from the start. The wait is an ``asyncio.sleep`` before the timed window, so
the latency recorded is write to ACK only, and a connection waiting for its turn holds up no
other connection's reading (a blocking sleep in the message source would stop the whole
event loop, and every ACK due meanwhile would be read late).

Persistent connections are the normal case. ``reconnect_per_message`` opens a new connection
for every message and counts the connect time in the latency, for servers that answer one
message per connection.

The load generator only talks to the loopback interface: it is a benchmark tool, not a
traffic source for other machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from benchmarks.messages import SyntheticMessage

START_BLOCK = b"\x0b"
FRAME_END = b"\x1c\r"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

AckCallback = Callable[[str, str, int], None]
"""Called after each ACK with (control id, MSA-1 code, ACKs so far)."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    port: int
    connections: int
    max_messages: int | None = None
    duration_seconds: float | None = None
    host: str = "127.0.0.1"
    reconnect_per_message: bool = False
    stop_on_error: bool = True
    ack_timeout_seconds: float = 10.0
    keep_acks: bool = False
    rate: float = 0.0  # messages per second over all connections; 0: as fast as acknowledged

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK_HOSTS:
            raise ValueError(f"the load generator only targets loopback, not {self.host!r}")
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        if self.max_messages is None and self.duration_seconds is None:
            raise ValueError("a load needs a message count, a duration, or both")
        if self.rate < 0:
            raise ValueError("rate must be 0 (unpaced) or more")


@dataclass(slots=True)
class LoadResult:
    spec: LoadSpec
    sent: int = 0
    acked: int = 0
    elapsed: float = 0.0
    ack_codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    connection_errors: Counter[str] = field(default_factory=Counter)
    mismatched_acks: int = 0
    # control id -> ACK bytes (without framing), when spec.keep_acks
    acks: dict[str, bytes] = field(default_factory=dict)
    # control ids written (or about to be) whose ACK never came
    unacked: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """ACKed messages per second over the whole run."""
        return self.acked / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self, quantile: float) -> float:
        return percentile(sorted(self.latencies), quantile) * 1000.0

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.latencies)
        return {
            "connections": self.spec.connections,
            "reconnect_per_message": self.spec.reconnect_per_message,
            "sent": self.sent,
            "acked": self.acked,
            "elapsed_s": round(self.elapsed, 3),
            "msg_per_s": round(self.rate, 1),
            "p50_ms": round(percentile(ordered, 0.50) * 1000.0, 3),
            "p99_ms": round(percentile(ordered, 0.99) * 1000.0, 3),
            "max_ms": round(ordered[-1] * 1000.0, 3) if ordered else 0.0,
            "ack_codes": dict(self.ack_codes),
            "connection_errors": dict(self.connection_errors),
            "mismatched_acks": self.mismatched_acks,
        }


def percentile(ordered: list[float], quantile: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(quantile * len(ordered) + 0.5)))
    return ordered[rank - 1]


def parse_ack(frame: bytes) -> tuple[str, str]:
    """MSA-1 (acknowledgment code) and MSA-2 (control id acknowledged) of an ACK."""
    start = frame.find(START_BLOCK)
    body = frame[start + 1 :] if start >= 0 else frame
    if body.endswith(FRAME_END):
        body = body[:-2]
    if not body.startswith(b"MSH") or len(body) < 4:
        raise ValueError(f"reply does not start with MSH: {body[:40]!r}")
    separator = body[3:4]
    for segment in body.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA" + separator):
            fields = segment.split(separator)
            code = fields[1].decode("ascii", "replace") if len(fields) > 1 else ""
            control = fields[2].decode("ascii", "replace") if len(fields) > 2 else ""
            return code, control
    raise ValueError("reply has no MSA segment")


class _Run:
    """Shared state of one load run (single event loop, so no locks)."""

    def __init__(
        self, spec: LoadSpec, source: Iterator[SyntheticMessage], on_ack: AckCallback | None
    ) -> None:
        self.spec = spec
        self.source = source
        self.on_ack = on_ack
        self.result = LoadResult(spec)
        self.deadline: float | None = None
        self.started = 0.0
        self.stopped = False

    def due(self) -> float:
        """When the message just taken may be written (perf_counter), with `spec.rate`."""
        if self.spec.rate <= 0:
            return 0.0
        return self.started + (self.result.sent - 1) / self.spec.rate

    def next_message(self) -> SyntheticMessage | None:
        if self.stopped:
            return None
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return None
        limit = self.spec.max_messages
        if limit is not None and self.result.sent >= limit:
            return None
        message = next(self.source, None)
        if message is None:
            self.stopped = True
            return None
        self.result.sent += 1
        return message

    def record(self, message: SyntheticMessage, reply: bytes, latency: float) -> None:
        result = self.result
        try:
            code, control = parse_ack(reply)
        except ValueError:
            code, control = "??", ""
        if control != message.control_id:
            result.mismatched_acks += 1
        result.acked += 1
        result.ack_codes[code] += 1
        result.latencies.append(latency)
        if self.spec.keep_acks:
            result.acks[message.control_id] = reply
        if self.on_ack is not None:
            self.on_ack(message.control_id, code, result.acked)

    def fail(self, message: SyntheticMessage | None, exc: BaseException) -> None:
        if message is not None:
            self.result.unacked.append(message.control_id)
        self.result.connection_errors[type(exc).__name__] += 1
        if self.spec.stop_on_error:
            self.stopped = True


async def _open(spec: LoadSpec) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(spec.host, spec.port, limit=4 * 1024 * 1024)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


_CONNECTION_FAILURES = (OSError, asyncio.IncompleteReadError, TimeoutError, EOFError)


async def _connection(
    run: _Run,
    connected: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
) -> None:
    spec = run.spec
    stream = connected
    clock = time.perf_counter
    while True:
        message = run.next_message()
        if message is None:
            break
        wait = run.due() - clock()
        if wait > 0:
            await asyncio.sleep(wait)  # pacing: outside the timed window
        started = clock()
        try:
            if stream is None:
                stream = await _open(spec)
            reader, writer = stream
            writer.write(START_BLOCK + message.raw + FRAME_END)
            async with asyncio.timeout(spec.ack_timeout_seconds):
                reply = await reader.readuntil(FRAME_END)
        except _CONNECTION_FAILURES as exc:
            run.fail(message, exc)
            if stream is not None:
                await _close(stream[1])
                stream = None
            if spec.stop_on_error:
                break
            continue
        run.record(message, reply, clock() - started)
        if spec.reconnect_per_message:
            await _close(writer)
            stream = None
    if stream is not None:
        await _close(stream[1])


async def run_load(
    spec: LoadSpec,
    messages: Iterable[SyntheticMessage],
    on_ack: AckCallback | None = None,
) -> LoadResult:
    """Drive `spec.connections` closed-loop connections until the load is done."""
    run = _Run(spec, iter(messages), on_ack)
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]
    if spec.reconnect_per_message:
        streams = [None] * spec.connections
    else:
        streams = list(await asyncio.gather(*(_open(spec) for _ in range(spec.connections))))
    started = run.started = time.perf_counter()
    if spec.duration_seconds is not None:
        run.deadline = started + spec.duration_seconds
    await asyncio.gather(*(_connection(run, stream) for stream in streams))
    run.result.elapsed = time.perf_counter() - started
    return run.result


def run_load_blocking(
    spec: LoadSpec,
    messages: Iterable[SyntheticMessage],
    on_ack: AckCallback | None = None,
) -> LoadResult:
    """`run_load` in its own event loop, for scripts and tests."""
    return asyncio.run(run_load(spec, messages, on_ack))
