"""The benchmarks' load generator: a paced load times write to ACK only, and a connection
waiting for its turn does not delay another connection's ACK."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from benchmarks.loadgen import FRAME_END, START_BLOCK, LoadSpec, run_load
from benchmarks.messages import synthetic_orders

ACK_DELAY = 0.1  # the server answers each message this long after it ends
RATE = 4.0  # messages per second: one every 0.25 s, more than twice the ACK delay


async def _slow_acker(arrivals: list[float]) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                frame = await reader.readuntil(FRAME_END)
                arrivals.append(time.perf_counter())
                body = frame[frame.index(START_BLOCK) + 1 : -2]
                control = body.split(b"\r")[0].split(b"|")[9]
                await asyncio.sleep(ACK_DELAY)
                ack = b"MSH|^~\\&|LAB|LAB|EHR|CLINIC|20260101||ACK|A1|P|2.5.1\rMSA|AA|" + control
                writer.write(START_BLOCK + ack + FRAME_END)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


def test_a_paced_load_times_write_to_ack_and_keeps_its_pace() -> None:
    async def scenario() -> tuple[list[float], list[float], float]:
        arrivals: list[float] = []
        server = await _slow_acker(arrivals)
        port = server.sockets[0].getsockname()[1]
        spec = LoadSpec(port=port, connections=2, max_messages=8, rate=RATE)
        started = time.perf_counter()
        result = await run_load(spec, synthetic_orders("PACE"))
        server.close()
        await server.wait_closed()
        assert result.acked == 8
        assert dict(result.ack_codes) == {"AA": 8}
        return result.latencies, arrivals, started

    latencies, arrivals, started = asyncio.run(scenario())
    # Never ahead of the pace: message n arrives no sooner than n / RATE after the start.
    for n, arrived in enumerate(sorted(arrivals)):
        assert arrived - started >= n / RATE - 0.01
    # The time measured is the server's delay (plus the loopback), not the wait for the next
    # slot (0.25 s): a blocking sleep in the message source made it at least that.
    assert statistics.median(latencies) < (ACK_DELAY + 1 / RATE) / 2 + 0.05


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        LoadSpec(port=1, connections=1, max_messages=1, rate=-1)
