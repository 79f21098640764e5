"""The MLLP listener over real sockets (port 0), in front of the real intake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from mllp_messages import msa, orm, running_server, stored_rows
from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.mllp.client import MLLPClient
from labintake.mllp.framing import FrameDecoder, OversizedMessage, frame
from labintake.mllp.server import MLLPServer, PeerIdentity


async def read_acks(reader: asyncio.StreamReader, count: int, timeout: float = 10.0) -> list[bytes]:
    decoder = FrameDecoder(1024 * 1024)
    acks: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(acks) < count:
            data = await reader.read(65536)
            if not data:
                break
            acks += [e for e in decoder.feed(data) if isinstance(e, bytes)]
    return acks


def run(coroutine: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coroutine())  # type: ignore[arg-type]


def test_many_messages_on_one_persistent_connection(settings: Settings, engine: Engine) -> None:
    async def go() -> None:
        async with (
            running_server(settings, engine) as server,
            MLLPClient("127.0.0.1", server.bound_port) as client,
        ):
            for i in range(200):
                ack = await client.send(orm(f"P{i}").encode())
                assert msa(ack)[1:3] == ["AA", f"P{i}"]

    run(go)
    assert len(stored_rows(engine)) == 200


def test_concurrent_connections_each_get_their_own_acks(settings: Settings, engine: Engine) -> None:
    async def one(port: int, connection: int) -> None:
        async with MLLPClient("127.0.0.1", port) as client:
            for i in range(40):
                control_id = f"K{connection}-{i}"
                assert msa(await client.send(orm(control_id).encode()))[1:3] == ["AA", control_id]

    async def go() -> None:
        async with running_server(settings, engine) as server:
            await asyncio.gather(*(one(server.bound_port, c) for c in range(8)))

    run(go)
    assert len(stored_rows(engine)) == 320


def test_pipelined_messages_in_one_write_are_answered_in_order(
    settings: Settings, engine: Engine
) -> None:
    async def go() -> None:
        async with running_server(settings, engine) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            ids = [f"Q{i}" for i in range(30)] + ["Q3"]  # and a duplicate in the same write
            writer.write(b"".join(frame(orm(i).encode()) for i in ids))
            acks = await read_acks(reader, len(ids))
            assert [msa(a)[2] for a in acks] == ids
            assert acks[-1] == acks[3]
            writer.close()

    run(go)
    assert len(stored_rows(engine)) == 30


def test_split_frames_stray_bytes_and_newline_separators_are_taken(
    settings: Settings, engine: Engine
) -> None:
    async def go() -> None:
        async with running_server(settings, engine) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            data = (
                b"\r\n"
                + frame(orm("S1", separator="\n").encode())
                + b"\n\n"
                + frame(orm("S2", separator="\r\n").encode())
            )
            for start in range(0, len(data), 37):
                writer.write(data[start : start + 37])
                await writer.drain()
                await asyncio.sleep(0.001)
            acks = await read_acks(reader, 2)
            assert [msa(a)[1:3] for a in acks] == [["AA", "S1"], ["AA", "S2"]]
            writer.close()

    run(go)


def test_oversized_message_gets_ar_and_the_connection_goes_on(
    settings: Settings, engine: Engine
) -> None:
    settings = settings.model_copy(update={"max_message_bytes": 4096})

    async def go() -> None:
        async with (
            running_server(settings, engine) as server,
            MLLPClient("127.0.0.1", server.bound_port) as client,
        ):
            big = orm("BIG1") + "NTE|1||" + "x" * 100_000 + "\r"
            ack = await client.send(big.encode())
            assert msa(ack)[1:3] == ["AR", "BIG1"]
            assert "exceeds the limit of 4096 bytes" in ack.decode()
            ack = await client.send(orm("AFTER1").encode())
            assert msa(ack)[1:3] == ["AA", "AFTER1"]

    run(go)
    assert [r["control_id"] for r in stored_rows(engine)] == ["AFTER1"]


def test_garbage_connection_does_not_disturb_others(settings: Settings, engine: Engine) -> None:
    async def go() -> None:
        async with running_server(settings, engine) as server:
            port = server.bound_port
            _r, garbage = await asyncio.open_connection("127.0.0.1", port)
            garbage.write(bytes(range(256)) * 40 + b"\x0bnot hl7 at all\x1c\x0d")
            await garbage.drain()
            async with MLLPClient("127.0.0.1", port) as client:
                assert msa(await client.send(orm("G1").encode()))[1] == "AA"
            ack = (await read_acks(_r, 1))[0]
            assert msa(ack)[1] == "AR"  # the garbage frame got a reject, not a crash
            garbage.close()

    run(go)


def test_idle_connection_is_closed(settings: Settings, engine: Engine) -> None:
    settings = settings.model_copy(update={"idle_timeout_seconds": 0.3})

    async def go() -> None:
        async with running_server(settings, engine) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            writer.write(frame(orm("I1").encode()))
            assert msa((await read_acks(reader, 1))[0])[1] == "AA"
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(100), 5.0) == b""
            assert 0.2 < time.monotonic() - started < 3.0
            writer.close()

    run(go)


def test_connections_over_the_maximum_are_closed_and_others_go_on(
    settings: Settings, engine: Engine
) -> None:
    settings = settings.model_copy(update={"max_connections": 2})

    async def go() -> None:
        async with running_server(settings, engine) as server:
            port = server.bound_port
            async with MLLPClient("127.0.0.1", port) as first, MLLPClient("127.0.0.1", port) as s:
                assert msa(await first.send(orm("X1").encode()))[1] == "AA"
                assert msa(await s.send(orm("X2").encode()))[1] == "AA"
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert await asyncio.wait_for(reader.read(100), 5.0) == b""
                writer.close()
                assert server.refused_connections == 1
                assert msa(await first.send(orm("X3").encode()))[1] == "AA"
            # Once the others are gone, a new connection is taken again.
            await asyncio.sleep(0.1)
            async with MLLPClient("127.0.0.1", port) as again:
                assert msa(await again.send(orm("X4").encode()))[1] == "AA"

    run(go)


def test_stop_answers_the_message_in_flight_then_closes(settings: Settings, engine: Engine) -> None:
    async def go() -> None:
        async with running_server(settings, engine) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            writer.write(frame(orm("T1").encode()))
            await writer.drain()
            await asyncio.sleep(0)
            stopping = asyncio.create_task(server.stop(grace=5.0))
            acks = await read_acks(reader, 1)
            await stopping
            assert [msa(a)[1:3] for a in acks] == [["AA", "T1"]]
            assert await asyncio.wait_for(reader.read(100), 5.0) == b""
            writer.close()

    run(go)
    assert len(stored_rows(engine)) == 1


class ExplodingHandler:
    """A handler that fails on purpose: the listener must survive it."""

    async def handle(self, frame: bytes, peer: str, identity: PeerIdentity | None = None) -> bytes:
        if b"BOOM" in frame:
            raise RuntimeError("handler failure")
        return b"MSH|^~\\&|OK\rMSA|AA|1\r"

    def handle_oversized(self, message: OversizedMessage, peer: str) -> bytes:
        return b""


def test_listener_survives_a_failing_handler() -> None:
    async def go() -> None:
        server = MLLPServer(ExplodingHandler(), port=0)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            writer.write(frame(b"MSH|BOOM"))
            assert await asyncio.wait_for(reader.read(100), 5.0) == b""
            writer.close()
            await writer.wait_closed()
            async with MLLPClient("127.0.0.1", server.bound_port) as client:
                assert b"MSA|AA" in await client.send(b"MSH|fine")
        finally:
            await server.stop()

    run(go)
