"""Slow peers: noise between frames, frames that never end, and one address taking every slot.

The legitimate sender connects from 127.0.0.2 (any 127.0.0.0/8 address reaches the listener
on Linux), the slow ones from 127.0.0.1, so the per-address limit tells them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import pytest
from mllp_messages import msa, orm, running_server, stored_rows
from sqlalchemy.engine import Engine
from test_mllp_server import read_acks

from labintake.config import Settings
from labintake.mllp.framing import START_BLOCK, frame

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs 127.0.0.2 on the loopback interface"
)


async def _closed_within(reader: asyncio.StreamReader, timeout: float) -> float:
    """Seconds until the server closed the connection (reads whatever it sent first)."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while await reader.read(4096):
            pass
    return time.monotonic() - started


async def _drip(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        while not writer.is_closing():
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(every)


def test_newlines_between_frames_do_not_keep_a_connection_open(
    settings: Settings, engine: Engine
) -> None:
    settings = settings.model_copy(update={"idle_timeout_seconds": 0.5})

    async def go() -> None:
        async with running_server(settings, engine) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            dripping = asyncio.create_task(_drip(writer, b"\n", 0.1))
            seconds = await _closed_within(reader, 5.0)
            dripping.cancel()
            writer.close()
            assert 0.4 < seconds < 2.0

    asyncio.run(go())


def test_a_frame_must_end_within_the_frame_deadline(settings: Settings, engine: Engine) -> None:
    settings = settings.model_copy(
        update={"idle_timeout_seconds": 30.0, "frame_timeout_seconds": 0.5}
    )

    async def go() -> None:
        async with running_server(settings, engine) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            writer.write(START_BLOCK)
            dripping = asyncio.create_task(_drip(writer, b"M", 0.1))
            seconds = await _closed_within(reader, 5.0)
            dripping.cancel()
            writer.close()
            assert 0.4 < seconds < 2.0
            assert server.slow_connections_closed == 1

    asyncio.run(go())


def test_messages_within_the_deadlines_keep_a_connection_open(
    settings: Settings, engine: Engine
) -> None:
    """Frames sent slowly but each within the deadline, and spaced under the idle timeout."""
    settings = settings.model_copy(
        update={"idle_timeout_seconds": 0.6, "frame_timeout_seconds": 0.6}
    )

    async def go() -> None:
        async with running_server(settings, engine) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            for i in range(5):  # 5 x 0.35 s: longer than either limit in total
                message = frame(orm(f"SLOW{i}").encode())
                writer.write(message[:20])
                await asyncio.sleep(0.2)
                writer.write(message[20:])
                assert msa((await read_acks(reader, 1))[0])[1:3] == ["AA", f"SLOW{i}"]
                await asyncio.sleep(0.15)
            writer.close()

    asyncio.run(go())
    assert len(stored_rows(engine)) == 5


@linux_only
def test_slow_connections_from_one_address_do_not_keep_a_sender_out(
    settings: Settings, engine: Engine
) -> None:
    """200 connections from one address, each sending a newline now and then, used to take
    every slot (max_connections is 200): the sender on another address was refused."""
    settings = settings.model_copy(update={"idle_timeout_seconds": 30.0})
    assert settings.max_connections == 200

    async def go() -> None:
        async with running_server(settings, engine) as server:
            port = server.bound_port
            slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(200)]
            drips = [asyncio.create_task(_drip(w, b"\n", 1.0)) for _, w in slow]
            await asyncio.sleep(0.3)
            assert server.connection_count == settings.max_connections_per_peer
            started = time.perf_counter()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0)
            )
            writer.write(frame(orm("LEGIT1").encode()))
            acks = await read_acks(reader, 1, timeout=5.0)
            seconds = time.perf_counter() - started
            assert [msa(a)[1:3] for a in acks] == [["AA", "LEGIT1"]]
            assert seconds < 1.0
            writer.close()
            for task in drips:
                task.cancel()
            for _, w in slow:
                w.close()

    asyncio.run(go())
    assert [r["control_id"] for r in stored_rows(engine)] == ["LEGIT1"]
