"""Crash safety: kill -9 the service under load; every message that got AA is stored once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mllp_messages import msa, orm, stored_rows
from sqlalchemy.engine import Engine

from labintake.mllp.client import MLLPClient

pytestmark = pytest.mark.slow


@contextmanager
def serve_process(database_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`labintake serve` in a child process on a free port; killed at the end if still alive."""
    env = {
        **os.environ,
        "LABINTAKE_DEVELOPMENT": "1",
        "LABINTAKE_DATABASE_URL": database_url,
        "LABINTAKE_MLLP_PORT": "0",
        "LABINTAKE_WEB_PORT": "0",
        "LABINTAKE_LOG_LEVEL": "WARNING",
        "LABINTAKE_INTERFACES_DIR": str(tmp_path / "no-interfaces"),
    }
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            found = re.match(r"port (\d+)", line)
            assert found, line
            yield process, int(found.group(1))
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


# The child prints the port it listens on once the whole service is up.
_CHILD = """
import asyncio, signal
from labintake.config import Settings
from labintake.runtime import Service

async def main():
    service = Service(Settings())
    await service.start()
    print(f"port {service.mllp_port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await service.stop()

asyncio.run(main())
"""


async def send_until_cut(port: int, ids: list[str], acked: set[str]) -> None:
    """Send `ids` over 4 connections, recording each AA, until the server goes away."""

    async def one(part: list[str]) -> None:
        try:
            async with MLLPClient("127.0.0.1", port, timeout=10) as client:
                for control_id in part:
                    ack = await client.send(orm(control_id).encode())
                    if msa(ack)[1] == "AA":
                        acked.add(control_id)
        except (OSError, TimeoutError):
            return

    await asyncio.gather(*(one(ids[i::4]) for i in range(4)))


def test_kill_9_under_load_loses_no_acknowledged_message(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    ids = [f"CRASH{i:05d}" for i in range(4_000)]
    acked: set[str] = set()
    with serve_process(database_url, tmp_path) as (process, port):

        async def load_then_kill() -> None:
            sending = asyncio.create_task(send_until_cut(port, ids, acked))
            while len(acked) < 300:
                await asyncio.sleep(0.05)
                assert not sending.done(), "the load ended before the kill"
            os.kill(process.pid, signal.SIGKILL)
            await sending

        asyncio.run(load_then_kill())
        assert process.wait(10) == -signal.SIGKILL

    stored = [str(row["control_id"]) for row in stored_rows(engine)]
    assert acked <= set(stored), "a message acknowledged AA is missing after the crash"
    assert len(stored) == len(set(stored))
    assert len(acked) < len(ids)

    # Restart and resend everything that was not acknowledged (and a few that were).
    with serve_process(database_url, tmp_path) as (_process, port):
        resend = [i for i in ids if i not in acked] + sorted(acked)[:50]
        again: set[str] = set()

        async def resend_all() -> None:
            started = time.monotonic()
            await send_until_cut(port, resend, again)
            assert time.monotonic() - started < 300

        asyncio.run(resend_all())
    assert again == set(resend)
    final = [str(row["control_id"]) for row in stored_rows(engine)]
    assert sorted(final) == sorted(ids)  # every message exactly once
