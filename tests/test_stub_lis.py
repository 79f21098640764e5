"""The stub LIS as a program (`python -m labintake.release.stub_lis`): it takes orders over
MLLP and stops cleanly on SIGTERM, as it must when it is a container's first process."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from labintake.mllp.client import MLLPClient, summarize_ack

ORDER = (
    b"MSH|^~\\&|CLINIC|FAC|LIS|LAB|20260101120000||ORM^O01|STUB0001|P|2.5.1\r"
    b"PID|1||MRN0001||Testpatient^Alex\r"
    b"ORC|NW|PO0001\r"
    b"OBR|1|PO0001||TSH^Thyroid stimulating hormone^L\r"
)


async def _send(port: int, message: bytes) -> bytes:
    async with MLLPClient("127.0.0.1", port, timeout=10) as client:
        return await client.send(message)


@pytest.fixture
def stub_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "labintake.release.stub_lis", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    found = re.search(r":(\d+)\s*$", process.stdout.readline())
    try:
        assert found, "the stub LIS did not say where it listens"
        yield process, int(found.group(1))
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_stub_lis_program_acknowledges_then_exits_cleanly_on_sigterm(
    stub_process: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = stub_process
    ack = summarize_ack(asyncio.run(_send(port, ORDER)))
    assert (ack.code, ack.control_id) == ("AA", "STUB0001")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
