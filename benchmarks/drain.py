"""Backlog drain: how fast a running service's reading worker turns stored messages into orders.

The backlog is stored first with no reader running, through labintake's own intake path
(`Intake.handle`, the function the MLLP server calls, so rows are exactly what intake
writes). Then `labintake serve` starts on that database and the fall of the `received` count
is timed: that is the service's reader (`read_pending` in its worker thread) at work, with
the listener idle.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import servers
from benchmarks.messages import synthetic_orders

POLL_SECONDS = 0.1


@dataclass(slots=True)
class Drain:
    backlog: int = 0
    read: int = 0
    seconds: float = 0.0
    statuses_after: dict[str, int] = field(default_factory=dict)
    service_peak_rss_bytes: int = 0
    service_sampled_peak_rss_bytes: int = 0
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
            "service_sampled_peak_rss_mb": round(
                self.service_sampled_peak_rss_bytes / 1024 / 1024, 1
            ),
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


def _received(database_url: str) -> int:
    return statuses(database_url).get("received", 0)


def watch(database_url: str, workdir: Path, max_seconds: float) -> Drain:
    """Start `labintake serve` on a database holding a backlog and time its reader.

    The `received` count is sampled from before the service starts (its workers may start
    reading before its listener reports ready). The clock runs from the first sample that
    shows reading under way to the sample that finds the backlog empty (or `max_seconds`
    later), so service start-up is not counted, and the rate is the messages read between
    those two samples over that time.
    """
    drain = Drain()
    before = statuses(database_url)
    drain.backlog = before.get("received", 0)
    samples: list[tuple[float, int]] = []
    service = servers.labintake(database_url, workdir)
    starter = threading.Thread(target=service.start, name="drain-service-start", daemon=True)
    starter.start()
    try:
        deadline: float | None = None
        while True:
            now, remaining = time.perf_counter(), _received(database_url)
            samples.append((now, remaining))
            if service.process is not None:
                drain.service_sampled_peak_rss_bytes = max(
                    drain.service_sampled_peak_rss_bytes, servers.rss_bytes(service.pid)
                )
            if remaining < drain.backlog and deadline is None:
                deadline = now + max_seconds
            if remaining == 0 or (deadline is not None and now >= deadline):
                break
            if deadline is None and not starter.is_alive() and service.process is None:
                break  # the service never started
            if service.process is not None and service.process.poll() is not None:
                break  # the service died
            time.sleep(POLL_SECONDS)
        starter.join()
        drain.service_peak_rss_bytes = service.peak_rss_bytes()
    finally:
        starter.join()
        service.stop(timeout=5.0)
    moving = [(t, r) for t, r in samples if r < drain.backlog]
    if moving:
        (first_t, first_r), (last_t, last_r) = moving[0], moving[-1]
        drain.read = first_r - last_r
        drain.seconds = last_t - first_t
        drain.note = (
            f"timed from the first sample with reading under way ({drain.backlog - first_r} "
            "already read then)"
        )
    else:
        drain.note = "the service read nothing"
    drain.statuses_after = statuses(database_url)
    if drain.statuses_after.get("error", 0) > before.get("error", 0):
        drain.note += "; some messages became errors: see statuses_after"
    return drain
