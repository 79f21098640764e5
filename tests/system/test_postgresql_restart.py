"""PostgreSQL restarted under load: intake NAKs or stays silent meanwhile, then recovers; every
message that got AA is stored exactly once, and what did not get AA is stored once on resend.

Runs against a private PostgreSQL cluster (see `cluster.py`), never the shared one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import servers
from benchmarks.loadgen import LoadSpec, parse_ack, run_load_blocking
from benchmarks.messages import synthetic_orders
from labintake.db import migrate
from tests.system.cluster import PrivateCluster, unavailable_reason
from tests.system.counts import stored_control_ids, wait_for_verification

LOAD_SECONDS = 14.0
RESTART_AFTER_SECONDS = 3.0
OUTAGE_SECONDS = 3.0
CONNECTIONS = 4


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    private = PrivateCluster()
    try:
        private.init()
        private.start()
        yield private
    finally:
        private.remove()


def test_postgresql_restart_during_load_loses_no_acknowledged_message(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    url = cluster.create_database("labintake")
    migrate(url)
    server = servers.labintake(url, tmp_path / "serve").start()
    assert server.port is not None
    timeline: list[tuple[float, str]] = []
    outage: dict[str, float] = {}

    def restart_postgresql() -> None:
        time.sleep(RESTART_AFTER_SECONDS)
        outage["down"] = time.monotonic()
        cluster.stop("fast")
        time.sleep(OUTAGE_SECONDS)
        cluster.start()
        outage["up"] = time.monotonic()

    def on_ack(_control_id: str, code: str, _acked: int) -> None:
        timeline.append((time.monotonic(), code))

    restarter = threading.Thread(target=restart_postgresql)
    try:
        restarter.start()
        load = run_load_blocking(
            LoadSpec(
                port=server.port,
                connections=CONNECTIONS,
                duration_seconds=LOAD_SECONDS,
                keep_acks=True,
                stop_on_error=False,
                ack_timeout_seconds=20.0,
            ),
            synthetic_orders("PGRESTART"),
            on_ack=on_ack,
        )
        restarter.join(120)
        assert "up" in outage, f"PostgreSQL did not come back:\n{cluster.log_tail()}"
        assert server.process is not None
        assert server.process.poll() is None, f"labintake died:\n{server.log_tail()}"

        codes = {control_id: parse_ack(ack)[0] for control_id, ack in load.acks.items()}
        accepted = {c for c, code in codes.items() if code == "AA"}
        refused = {c for c, code in codes.items() if code != "AA"}
        unanswered = set(load.unacked)
        stored_after_restart = stored_control_ids(url, "BENCHEHR")

        # Nothing acknowledged was lost, and the outage was really seen by the senders.
        lost = sorted(accepted - set(stored_after_restart))
        assert not lost, f"{len(lost)} acknowledged messages not stored, e.g. {lost[:5]}"
        assert refused | unanswered, "no message was refused or left unanswered during the outage"
        assert set(codes.values()) <= {"AA", "AE"}, load.ack_codes
        # Intake recovered: acknowledgements after PostgreSQL came back include AA.
        after = [code for moment, code in timeline if moment > outage["up"] + 2.0]
        assert "AA" in after, f"no AA after the restart; codes after: {set(after)}"
        during = [code for moment, code in timeline if outage["down"] < moment < outage["up"]]

        # The sender resends everything that did not get AA; each is then stored once.
        messages = {m.control_id: m for m in synthetic_orders("PGRESTART", load.sent)}
        resend = [messages[c] for c in sorted(refused | unanswered)]
        second = run_load_blocking(
            LoadSpec(
                port=server.port,
                connections=CONNECTIONS,
                max_messages=len(resend),
                keep_acks=True,
                ack_timeout_seconds=20.0,
            ),
            resend,
        )
        pipeline = wait_for_verification(url, "BENCHEHR", load.sent)
    finally:
        restarter.join(120)
        server.stop()
    assert second.ack_codes == {"AA": len(resend)}, second.summary()
    stored = stored_control_ids(url, "BENCHEHR")
    repeated = {c: n for c, n in stored.items() if n != 1}
    assert not repeated, f"stored more than once: {list(repeated.items())[:5]}"
    assert set(stored) == set(messages), (
        f"missing {len(set(messages) - set(stored))}, extra {len(set(stored) - set(messages))}"
    )
    print(
        f"\nPostgreSQL restart: sent {load.sent}, acknowledged AA {len(accepted)}, "
        f"AE {len(refused)}, unanswered {len(unanswered)} (during the outage: "
        f"{during.count('AA')} AA, {len(during) - during.count('AA')} other); "
        f"stored after restart {len(stored_after_restart)} (all {len(accepted)} AA among them); "
        f"resent {len(resend)}, all AA; stored at the end {len(stored)} of {load.sent}, "
        f"each exactly once; then {pipeline.line()} (no LIS here: delivery not awaited)"
    )
    assert pipeline.orders_per_message == {1: load.sent}, pipeline.line()
    assert pipeline.verifications_per_order == {1: load.sent}, pipeline.line()
