"""kill -9 of an instance during load, then every stage after intake counted.

`tests/test_crash.py` proves the inbound store (every AA'd message stored exactly once after a
SIGKILL and a resend, on both backends). This test follows the same messages further: after
the kill, the resend and the restart, each message is read once, verified once, released once
and delivered to the LIS (which recognises repeats by control id) exactly once.

- SQLite: the one instance is killed mid-load and restarted on the same file.
- PostgreSQL: two instances share the load; one is killed, the other carries on alone, and
  the killed one is restarted.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from benchmarks import servers
from benchmarks.databases import fresh_postgresql_database
from benchmarks.loadgen import LoadResult, LoadSpec, parse_ack, run_load
from benchmarks.messages import SENDING_APPLICATION, SyntheticMessage, synthetic_orders
from labintake.db import migrate
from labintake.release.stub_lis import StubLis
from tests.system.counts import pipeline_counts
from tests.system.instances import (
    error_lines,
    start_instances,
    wait_until,
)

pytestmark = pytest.mark.slow

TOTAL = 900
KILL_AFTER_ACKS = 300
DRAIN_SECONDS = 300


async def _load(
    ports: list[int], messages: list[SyntheticMessage], acked: list[int] | None = None
) -> list[LoadResult]:
    """Two connections per instance, each instance taking its share of the messages; with
    `acked`, `acked[0]` counts the ACKs received so far (for the kill switch)."""
    shares = [messages[i :: len(ports)] for i in range(len(ports))]

    def on_ack(_control_id: str, _code: str, _total: int) -> None:
        if acked is not None:
            acked[0] += 1

    return list(
        await asyncio.gather(
            *(
                run_load(
                    LoadSpec(
                        port=port,
                        connections=2,
                        max_messages=len(share),
                        keep_acks=True,
                        stop_on_error=False,
                        ack_timeout_seconds=30.0,
                    ),
                    share,
                    on_ack=on_ack,
                )
                for port, share in zip(ports, shares, strict=True)
                if share
            )
        )
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_during_load_then_every_message_is_read_verified_and_delivered_once(
    backend: str, tmp_path: Path
) -> None:
    messages = list(synthetic_orders(f"KILL{backend[:2].upper()}", TOTAL))
    by_id = {m.control_id: m for m in messages}
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'kill.sqlite3'}"
        migrate(url)
        database = None
    else:
        database = fresh_postgresql_database("labintake_kill")
        url = database.__enter__()
    count = 1 if backend == "sqlite" else 2
    lis = StubLis(port=0).start()
    env = {"LABINTAKE_LIS_HOST": "127.0.0.1", "LABINTAKE_LIS_PORT": str(lis.port)}
    instances = start_instances(count, url, tmp_path / "first", env)
    victim = instances[0]
    try:
        acked = [0]
        killed = threading.Event()

        def watch() -> None:
            while not killed.is_set():
                if acked[0] >= KILL_AFTER_ACKS:
                    victim.kill()
                    killed.set()
                    return
                killed.wait(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        # The watcher kills the victim once enough ACKs have come back.
        first = asyncio.run(_load([i.port or 0 for i in instances], messages, acked))
        killed.set()
        watcher.join(5)
        codes = {c: parse_ack(a)[0] for r in first for c, a in r.acks.items()}
        accepted = {c for c, code in codes.items() if code == "AA"}
        assert victim.process is not None
        assert victim.process.returncode is not None, "the instance was never killed"

        # Restart the killed instance and resend what got no AA.
        restarted = servers.labintake(url, tmp_path / "restarted", extra_env=env).start()
        instances[0] = restarted
        resend = [by_id[c] for c in by_id if c not in accepted]
        second = asyncio.run(_load([i.port or 0 for i in instances], resend)) if resend else []
        resent_codes = [parse_ack(a)[0] for r in second for a in r.acks.values()]
        drained = wait_until(
            lambda: (
                pipeline_counts(url, SENDING_APPLICATION).outbox_statuses.get("delivered", 0)
                >= TOTAL
            ),
            timeout=DRAIN_SECONDS,
            interval=2.0,
        )
        counts = pipeline_counts(url, SENDING_APPLICATION)
        errors = {i.name: error_lines(i) for i in instances[1:]} | {
            "restarted": error_lines(restarted)
        }
    finally:
        for instance in instances:
            instance.stop()
        victim.kill()
        lis.stop()
        if database is not None:
            database.__exit__(None, None, None)
    lis_counts = lis.counts()
    print(
        f"\nkill -9 ({backend}, {count} instance{'s' if count > 1 else ''}): sent "
        f"{sum(r.sent for r in first)} before and around the kill, AA {len(accepted)}; resent "
        f"{len(resend)} ({resent_codes.count('AA')} AA); {counts.line()}; LIS took "
        f"{len(lis_counts)} control ids, {sum(lis_counts.values()) - len(lis_counts)} repeats"
    )
    assert resent_codes.count("AA") == len(resend)
    assert drained, counts.line()
    assert set(counts.stored) == set(by_id)
    assert set(counts.stored.values()) == {1}
    assert counts.orders_per_message == {1: TOTAL}
    assert counts.verifications_per_order == {1: TOTAL}
    assert counts.releases_per_order == {1: TOTAL}
    assert counts.order_statuses == {"delivered": TOTAL}
    assert set(lis_counts) == counts.outbox_control_ids
    assert len(lis_counts) == TOTAL
    assert errors == {name: [] for name in errors}, errors
