"""Backlog drain: how fast a running service's reading worker turns stored messages into orders.

The backlog is stored first with no reader running, through labintake's own intake path
(`Intake.handle`, the function the MLLP server calls, so rows are exactly what intake
writes). Then `labintake serve` starts on that database and the fall of the `received` count
is timed: that is the service's reader (`read_pending` in its worker thread) at work, with
the listener idle.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import servers
from benchmarks.messages import synthetic_orders

POLL_SECONDS = 0.25


@dataclass(slots=True)
class Drain:
    backlog: int = 0
    read: int = 0
    seconds: float = 0.0
    statuses_after: dict[str, int] = field(default_factory=dict)
    service_peak_rss_bytes: int = 0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "backlog": self.backlog,
            "read": self.read,
            "seconds": round(self.seconds, 3),
            "msg_per_s": round(self.rate, 1),
            "statuses_after": self.statuses_after,
            "service_peak_rss_mb": round(self.service_peak_rss_bytes / 1024 / 1024, 1),
            "note": self.note,
        }


def statuses(database_url: str) -> dict[str, int]:
    """Inbound messages per status, plus the number of orders read (`orders`)."""
    from sqlalchemy import text

    from labintake.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT status, count(*) FROM inbound_message GROUP BY status")
            ).all()
            orders = conn.execute(text("SELECT count(*) FROM lab_order")).scalar_one()
    finally:
        engine.dispose()
    counts = {str(r[0]): int(r[1]) for r in rows}
    counts["orders"] = int(orders)
    return counts


async def _store(database_url: str, count: int, prefix: str) -> int:
    from labintake.config import Settings
    from labintake.db import make_engine
    from labintake.intake import Intake

    settings = Settings(
        development=True,
        database_url=database_url,
        interfaces_dir=servers.REPO / "interfaces",
        code_tables_dir=servers.REPO / "code_tables",
    )
    engine = make_engine(database_url)
    accepted = 0
    try:
        async with Intake(settings, engine) as intake:
            batch: list[bytes] = []
            for message in synthetic_orders(prefix, count):
                batch.append(message.raw)
                if len(batch) == 250:
                    acks = await asyncio.gather(*(intake.handle(m, "benchmark") for m in batch))
                    accepted += sum(b"MSA|AA|" in ack for ack in acks)
                    batch = []
            acks = await asyncio.gather(*(intake.handle(m, "benchmark") for m in batch))
            accepted += sum(b"MSA|AA|" in ack for ack in acks)
    finally:
        engine.dispose()
    return accepted


def store_backlog(database_url: str, count: int, prefix: str = "D") -> int:
    """Store `count` synthetic orders through the intake path; returns how many got AA."""
    return asyncio.run(_store(database_url, count, prefix))


def watch(database_url: str, workdir: Path, max_seconds: float) -> Drain:
    """Start `labintake serve` on a database holding a backlog and time its reader."""
    drain = Drain()
    service = servers.labintake(database_url, workdir).start()
    try:
        before = statuses(database_url)
        drain.backlog = before.get("received", 0)
        started = time.perf_counter()
        remaining = drain.backlog
        while remaining and time.perf_counter() - started < max_seconds:
            time.sleep(POLL_SECONDS)
            remaining = statuses(database_url).get("received", 0)
        drain.seconds = time.perf_counter() - started
        drain.read = drain.backlog - remaining
        drain.service_peak_rss_bytes = service.peak_rss_bytes()
    finally:
        service.stop(timeout=5.0)
    drain.statuses_after = statuses(database_url)
    if drain.statuses_after.get("error", 0) > before.get("error", 0):
        drain.note = "some messages became errors: see statuses_after"
    return drain
