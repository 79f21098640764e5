"""Three `labintake serve` processes on one PostgreSQL database share the work, with no
coordinator of their own: load goes in through HAProxy (running `docker/haproxy.cfg`) or,
without HAProxy, straight to the instances in turn; afterwards every message is stored once,
read once, verified once, released once and delivered once to the stub LIS.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from pathlib import Path

import pytest

from benchmarks.databases import fresh_postgresql_database
from benchmarks.loadgen import LoadResult, LoadSpec, parse_ack, run_load
from benchmarks.messages import SENDING_APPLICATION, SyntheticMessage, synthetic_orders
from labintake.release.stub_lis import StubLis
from tests.system.counts import PipelineCounts, pipeline_counts
from tests.system.instances import (
    error_lines,
    haproxy_available,
    start_balancer,
    start_instances,
    wait_until,
    web_port,
)

pytestmark = pytest.mark.slow

INSTANCES = 3
TOTAL = 1200
CONNECTIONS = 6
DRAIN_SECONDS = 300
STORED_SUMMARY = re.compile(r" labintake\.intake stored ([\d,]+) messages in the last ")


async def _spread_load(ports: list[int], messages: list[SyntheticMessage]) -> list[LoadResult]:
    """Without a balancer: the messages dealt out to the instances, two connections each."""
    shares: list[list[SyntheticMessage]] = [[] for _ in ports]
    for message, share in zip(messages, itertools.cycle(shares), strict=False):
        share.append(message)
    return list(
        await asyncio.gather(
            *(
                run_load(
                    LoadSpec(port=port, connections=2, max_messages=len(share), keep_acks=True),
                    share,
                )
                for port, share in zip(ports, shares, strict=True)
            )
        )
    )


class Progress:
    """Samples of each stage's totals while the pipeline drains (printed with the result)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.started = time.monotonic()
        self.samples: list[str] = []

    def drained(self, expected_orders: int) -> bool:
        counts = pipeline_counts(self.url, SENDING_APPLICATION)
        verified = sum(
            counts.verifications_per_order.values()
        ) - counts.verifications_per_order.get(0, 0)
        delivered = counts.outbox_statuses.get("delivered", 0)
        self.samples.append(
            f"{time.monotonic() - self.started:5.0f}s read {counts.orders} verified {verified} "
            f"released {sum(counts.outbox_statuses.values())} delivered {delivered}"
        )
        return delivered >= expected_orders


def test_three_instances_on_postgresql_store_read_verify_release_and_deliver_each_once(
    tmp_path: Path,
) -> None:
    messages = list(synthetic_orders("SCALE", TOTAL))
    with fresh_postgresql_database("labintake_scale") as url, StubLis(port=0) as lis:
        instances = start_instances(
            INSTANCES,
            url,
            tmp_path,
            {"LABINTAKE_LIS_HOST": "127.0.0.1", "LABINTAKE_LIS_PORT": str(lis.port)},
        )
        balancer = None
        try:
            pairs = [(i.port or 0, web_port(i)) for i in instances]
            if haproxy_available():
                balancer = start_balancer(pairs, tmp_path / "haproxy")
                results = [
                    asyncio.run(
                        run_load(
                            LoadSpec(
                                port=balancer.mllp_port,
                                connections=CONNECTIONS,
                                max_messages=TOTAL,
                                keep_acks=True,
                            ),
                            messages,
                        )
                    )
                ]
                route = f"through HAProxy ({balancer.config.name})"
            else:
                results = asyncio.run(_spread_load([p for p, _ in pairs], messages))
                route = "straight to the instances (HAProxy not installed)"
            progress = Progress(url)
            drained = wait_until(
                lambda: progress.drained(TOTAL), timeout=DRAIN_SECONDS, interval=5.0
            )
            counts = pipeline_counts(url, SENDING_APPLICATION)
            errors = {i.name: error_lines(i) for i in instances}
            alive = [i.process is not None and i.process.poll() is None for i in instances]
        finally:
            if balancer is not None:
                balancer.stop()
            for instance in instances:
                instance.stop()
        # Each instance's intake summary lines (the last one written as it stopped).
        stored_by = {
            i.name: sum(
                int(n.replace(",", ""))
                for n in STORED_SUMMARY.findall(i.log_path.read_text(errors="replace"))
            )
            for i in instances
        }
        lis_counts = lis.counts()

    acks = {c: parse_ack(a)[0] for r in results for c, a in r.acks.items()}
    sent = sum(r.sent for r in results)
    _report(route, sent, acks, counts, lis_counts, stored_by)
    print("drain after the load (seconds since it ended):\n  " + "\n  ".join(progress.samples))
    assert all(alive), "an instance died under load"
    assert drained, f"pipeline did not drain in time: {counts.line()}"
    assert sent == TOTAL
    assert list(acks.values()).count("AA") == TOTAL
    # Stored once, read once, one order each, verified once, released once, delivered once.
    assert set(counts.stored) == {m.control_id for m in messages}
    assert set(counts.stored.values()) == {1}
    assert counts.read_attempts == {1: TOTAL}
    assert counts.orders_per_message == {1: TOTAL}
    assert counts.order_statuses == {"delivered": TOTAL}, counts.order_statuses
    assert counts.verifications_per_order == {1: TOTAL}
    assert counts.releases_per_order == {1: TOTAL}
    assert counts.outbox_statuses == {"delivered": TOTAL}
    assert set(lis_counts) == counts.outbox_control_ids
    assert set(lis_counts.values()) == {1}, "the LIS got an order more than once"
    # The work was shared: every instance took messages in.
    assert all(n > 0 for n in stored_by.values()), stored_by
    assert errors == {i: [] for i in errors}, errors


def _report(
    route: str,
    sent: int,
    acks: dict[str, str],
    counts: PipelineCounts,
    lis_counts: dict[str, int],
    stored_by: dict[str, int],
) -> None:
    print(
        f"\nscale-out, {INSTANCES} instances on PostgreSQL, load {route}: sent {sent}, "
        f"AA {list(acks.values()).count('AA')}; {counts.line()}; LIS received "
        f"{sum(lis_counts.values())} messages for {len(lis_counts)} control ids; "
        f"messages stored per instance {stored_by}"
    )
