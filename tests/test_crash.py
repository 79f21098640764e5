"""Crash safety: `kill -9` of `labintake serve` in the middle of a load loses no acknowledged order.

A real `labintake serve` subprocess takes thousands of messages over several connections and
is killed with SIGKILL (with any worker process it started) part way through. Right after a
restart on the same database, every message that got AA must be there; then everything that
got no ACK is resent, with a share of the acknowledged ones as duplicates, and at the end
every message is stored exactly once, byte for byte as sent, and each duplicate got its
original acknowledgement back.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from benchmarks import servers
from benchmarks.loadgen import LoadResult, LoadSpec, parse_ack, run_load_blocking
from benchmarks.messages import SENDING_APPLICATION, SENDING_FACILITY, synthetic_orders
from labintake.db import make_engine

pytestmark = pytest.mark.slow

TOTAL = 3000
CONNECTIONS = 8
KILL_AFTER_ACKS = 2000
# Every n-th acknowledged message is sent again after the restart, as a duplicate.
DUPLICATE_EVERY = 10


def _stored(database_url: str) -> dict[str, list[bytes]]:
    """Raw bytes stored per control id for the benchmark sender (a list, to see repeats)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT control_id, raw FROM inbound_message "
                    "WHERE sending_application = :app AND sending_facility = :facility"
                ),
                {"app": SENDING_APPLICATION, "facility": SENDING_FACILITY},
            ).all()
    finally:
        engine.dispose()
    stored: dict[str, list[bytes]] = {}
    for control_id, raw in rows:
        stored.setdefault(str(control_id), []).append(bytes(raw))
    return stored


def _codes(result: LoadResult) -> dict[str, str]:
    return {control_id: parse_ack(ack)[0] for control_id, ack in result.acks.items()}


def test_kill_9_mid_load_then_resend_stores_every_accepted_message_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    phases: dict[str, float] = {}
    messages = list(synthetic_orders("CRASH", TOTAL))
    sent_raw = {m.control_id: m.raw for m in messages}

    # 1. Load until KILL_AFTER_ACKS acknowledgements have come back, then SIGKILL the server.
    first_server = servers.labintake(database_url, tmp_path / "first").start()
    assert first_server.port is not None
    phases["start"] = time.monotonic() - began
    kills: list[int] = []

    def kill_mid_load(_control_id: str, _code: str, acked: int) -> None:
        if acked == KILL_AFTER_ACKS:
            first_server.kill()
            kills.append(acked)

    try:
        first = run_load_blocking(
            LoadSpec(
                port=first_server.port,
                connections=CONNECTIONS,
                max_messages=TOTAL,
                keep_acks=True,
                ack_timeout_seconds=30.0,
            ),
            messages,
            on_ack=kill_mid_load,
        )
    finally:
        first_server.kill()
    phases["load"] = time.monotonic() - began - sum(phases.values())
    first_codes = _codes(first)
    accepted = {control_id for control_id, code in first_codes.items() if code == "AA"}
    assert kills == [KILL_AFTER_ACKS], f"load ended after {first.acked} ACKs, before the kill"
    assert first.connection_errors, "no connection saw the server die"
    assert set(first_codes.values()) == {"AA"}, f"unexpected ACK codes: {first.ack_codes}"
    assert first.mismatched_acks == 0

    # 2. Restart on the same database: every AA'd message must have survived the kill.
    second_server = servers.labintake(database_url, tmp_path / "second").start()
    assert second_server.port is not None
    phases["restart"] = time.monotonic() - began - sum(phases.values())
    try:
        after_crash = _stored(database_url)
        lost = sorted(accepted - set(after_crash))
        assert not lost, f"{len(lost)} acknowledged messages lost by the kill, e.g. {lost[:5]}"
        stored_unacknowledged = set(after_crash) - accepted

        # 3. Resend everything without an AA, plus a share of the AA'd ones as duplicates.
        duplicates = sorted(accepted)[::DUPLICATE_EVERY]
        resend = [m for m in messages if m.control_id not in accepted]
        resend += [m for m in messages if m.control_id in set(duplicates)]
        second = run_load_blocking(
            LoadSpec(
                port=second_server.port,
                connections=CONNECTIONS,
                max_messages=len(resend),
                keep_acks=True,
                ack_timeout_seconds=30.0,
            ),
            resend,
        )
        phases["resend"] = time.monotonic() - began - sum(phases.values())
    finally:
        # Every reply is in; whether the workers finish their batches does not matter here.
        second_server.stop(timeout=5.0)

    assert second.acked == len(resend), f"resend incomplete: {second.summary()}"
    assert set(_codes(second).values()) == {"AA"}, f"resend ACK codes: {second.ack_codes}"
    changed = [c for c in duplicates if second.acks[c] != first.acks[c]]
    assert not changed, f"{len(changed)} duplicates did not get their original ACK: {changed[:5]}"

    # 4. In the database: every message once, exactly as sent; nothing else.
    stored = _stored(database_url)
    repeated = {c: len(raws) for c, raws in stored.items() if len(raws) != 1}
    assert not repeated, f"stored more than once: {repeated}"
    assert set(stored) == set(sent_raw), (
        f"missing {len(set(sent_raw) - set(stored))}, unexpected {len(set(stored) - set(sent_raw))}"
    )
    altered = [c for c, raws in stored.items() if raws[0] != sent_raw[c]]
    assert not altered, f"{len(altered)} stored messages differ from what was sent"

    print(
        f"\ncrash test ({database_url.split(':', 1)[0]}): sent {first.sent} before the kill, "
        f"{len(accepted)} acknowledged (AA); after restart {len(after_crash)} stored "
        f"({len(stored_unacknowledged)} stored without an ACK); resent {len(resend)} "
        f"({len(duplicates)} duplicates of AA'd messages); stored at the end {len(stored)} "
        f"of {TOTAL}, each exactly once; seconds: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items())
    )
