"""Slow peers against the MLLP listener: can a sender still get in, and how fast?

Run: ``python -m benchmarks.slow_peers`` (Linux: the sender uses 127.0.0.2). In one process,
labintake's `MLLPServer` + `Intake` on a fresh SQLite file (WAL, synchronous FULL) take:

1. 200 connections from 127.0.0.1, each writing one newline a second (outside any frame);
2. meanwhile a sender on 127.0.0.2 opening a new connection for each of 50 messages.

Printed: how many slow connections the listener holds, whether the sender got in, and the
sender's connect-to-ACK time (median, p95): first with no slow connections (the baseline),
then with the per-address limit at its default, then with it at 200 (as good as no limit:
what the listener did before). Then how long a connection that only writes newlines stays
open with a 2 s idle timeout, and one that opens a frame and dribbles a byte every 0.1 s with
a 2 s frame deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.messages import order_message
from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.intake import Intake
from labintake.interfaces import InterfaceRegistry
from labintake.mllp.framing import START_BLOCK, FrameDecoder, frame
from labintake.mllp.server import MLLPServer

SLOW = 200
MESSAGES = 50


async def _drip(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        while not writer.is_closing():
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(every)


async def _one_message(port: int, control_id: str) -> float | None:
    """Seconds from connect to ACK from 127.0.0.2, or None when refused."""
    import random
    from datetime import UTC, datetime

    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        writer.write(frame(order_message(control_id, random.Random(1), datetime.now(UTC))))
        decoder = FrameDecoder(1 << 20)
        async with asyncio.timeout(5.0):
            while True:
                data = await reader.read(65536)
                if not data:
                    return None
                if any(isinstance(e, bytes) for e in decoder.feed(data)):
                    break
        writer.close()
        return time.perf_counter() - started
    except (ConnectionError, TimeoutError):
        return None


async def _server(settings: Settings, intake: Intake, per_peer: int) -> MLLPServer:
    server = MLLPServer(
        intake,
        port=0,
        idle_timeout=settings.idle_timeout_seconds,
        max_connections=settings.max_connections,
        max_connections_per_peer=per_peer,
        frame_timeout=settings.frame_timeout_seconds,
    )
    await server.start()
    return server


async def crowd(
    settings: Settings, intake: Intake, per_peer: int, run: int, crowd_size: int = SLOW
) -> None:
    server = await _server(settings, intake, per_peer)
    port = server.bound_port
    slow = []
    for _ in range(crowd_size):
        with contextlib.suppress(ConnectionError):
            slow.append(await asyncio.open_connection("127.0.0.1", port))
    drips = [asyncio.create_task(_drip(w, b"\n", 1.0)) for _, w in slow]
    await asyncio.sleep(0.5)
    held = server.connection_count
    times = [await _one_message(port, f"SP{run}-{i}") for i in range(MESSAGES)]
    taken = sorted(t for t in times if t is not None)
    line = f"per-address limit {per_peer:>3}: {held:>3} slow connections held; sender "
    if taken:
        p95 = taken[min(len(taken) - 1, int(len(taken) * 0.95))]
        line += (
            f"got {len(taken)}/{MESSAGES} AA, connect-to-ACK median "
            f"{statistics.median(taken) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"
        )
    else:
        line += f"refused {MESSAGES}/{MESSAGES} times"
    print(line, flush=True)
    for task in drips:
        task.cancel()
    for _, writer in slow:
        writer.close()
    await server.stop(grace=2.0)


async def closes(settings: Settings, intake: Intake) -> None:
    quick = settings.model_copy(update={"idle_timeout_seconds": 2.0, "frame_timeout_seconds": 2.0})
    server = await _server(quick, intake, 20)
    for label, opening, data, every in (
        ("newline every 1 s, idle timeout 2 s", b"", b"\n", 1.0),
        ("frame byte every 0.1 s, frame deadline 2 s", START_BLOCK, b"M", 0.1),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
        writer.write(opening)
        task = asyncio.create_task(_drip(writer, data, every))
        started = time.monotonic()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(30.0):
                while await reader.read(4096):
                    pass
        print(f"{label}: closed after {time.monotonic() - started:.2f} s", flush=True)
        task.cancel()
        writer.close()
    await server.stop(grace=2.0)


async def main_async(directory: Path) -> None:
    url = f"sqlite:///{directory / 'slow_peers.sqlite3'}"
    migrate(url)
    engine = make_engine(url)
    settings = Settings(development=True, database_url=url, idle_timeout_seconds=300.0)
    intake = Intake(settings, engine, interfaces=InterfaceRegistry([]))
    intake.start()
    try:
        await crowd(settings, intake, settings.max_connections_per_peer, 0, crowd_size=0)
        await crowd(settings, intake, settings.max_connections_per_peer, 1)
        await crowd(settings, intake, settings.max_connections, 2)
        await closes(settings, intake)
    finally:
        await asyncio.to_thread(intake.close)
        engine.dispose()


def main() -> None:
    logging.getLogger("labintake").setLevel(logging.ERROR)  # a refusal line per connection
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(main_async(Path(directory)))


if __name__ == "__main__":
    main()
