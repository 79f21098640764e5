"""What the database holds for one sender, counted straight from the tables."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from mllp_messages import stored_rows
from sqlalchemy import text

from labintake.db import make_engine


def stored_control_ids(database_url: str, sending_application: str) -> Counter[str]:
    """How many messages each control id of `sending_application` has in the store: the
    database, and intake's journal beside a SQLite file (`mllp_messages.stored_rows`)."""
    engine = make_engine(database_url)
    try:
        rows = stored_rows(engine, "id, control_id, sending_application")
    finally:
        engine.dispose()
    return Counter(
        str(row["control_id"]) for row in rows if row["sending_application"] == sending_application
    )


@dataclass(frozen=True)
class PipelineCounts:
    """Each stage's rows for one sender's messages, counted per item so repeats show."""

    stored: Counter[str]  # control id -> inbound rows
    read_attempts: Counter[int]  # attempts -> messages
    orders_per_message: Counter[int]  # orders -> messages
    order_statuses: Counter[str]
    verifications_per_order: Counter[int]  # verifications -> orders
    releases_per_order: Counter[int]  # release outbox rows -> orders (released orders only)
    outbox_statuses: Counter[str]
    outbox_control_ids: frozenset[str]

    @property
    def orders(self) -> int:
        return sum(self.order_statuses.values())

    def line(self) -> str:
        return (
            f"stored {sum(self.stored.values())} ({len(self.stored)} control ids), "
            f"read attempts {dict(self.read_attempts)}, orders {self.orders} "
            f"{dict(self.order_statuses)}, verifications per order "
            f"{dict(self.verifications_per_order)}, releases per order "
            f"{dict(self.releases_per_order)}, outbox {dict(self.outbox_statuses)}"
        )


def pipeline_counts(database_url: str, sending_application: str) -> PipelineCounts:
    engine = make_engine(database_url)
    app = {"app": sending_application}
    try:
        with engine.connect() as conn:

            def pairs(sql: str) -> list[tuple[object, object]]:
                return [(a, b) for a, b in conn.execute(text(sql), app).all()]

            stored = Counter(
                {
                    str(c): int(n)
                    for c, n in pairs(
                        "SELECT control_id, count(*) FROM inbound_message "
                        "WHERE sending_application = :app GROUP BY control_id"
                    )
                }
            )
            attempts = Counter(
                {
                    int(str(a)): int(str(n))
                    for a, n in pairs(
                        "SELECT read_attempts, count(*) FROM inbound_message "
                        "WHERE sending_application = :app GROUP BY read_attempts"
                    )
                }
            )
            per_message = Counter(
                int(str(n))
                for _, n in pairs(
                    "SELECT m.id, count(o.id) FROM inbound_message m "
                    "LEFT JOIN lab_order o ON o.message_id = m.id "
                    "WHERE m.sending_application = :app GROUP BY m.id"
                )
            )
            statuses = Counter(
                {
                    str(s): int(str(n))
                    for s, n in pairs(
                        "SELECT status, count(*) FROM lab_order "
                        "WHERE sending_application = :app GROUP BY status"
                    )
                }
            )
            verifications = Counter(
                int(str(n))
                for _, n in pairs(
                    "SELECT o.id, count(v.id) FROM lab_order o "
                    "LEFT JOIN verification v ON v.order_id = o.id "
                    "WHERE o.sending_application = :app GROUP BY o.id"
                )
            )
            releases = Counter(
                int(str(n))
                for _, n in pairs(
                    "SELECT o.id, count(x.id) FROM lab_order o "
                    "JOIN outbox x ON x.order_id = o.id AND x.kind = 'release' "
                    "WHERE o.sending_application = :app GROUP BY o.id"
                )
            )
            outbox_rows = conn.execute(
                text(
                    "SELECT x.status, x.control_id FROM outbox x "
                    "JOIN lab_order o ON o.id = x.order_id "
                    "WHERE o.sending_application = :app AND x.kind = 'release'"
                ),
                app,
            ).all()
    finally:
        engine.dispose()
    return PipelineCounts(
        stored=stored,
        read_attempts=attempts,
        orders_per_message=per_message,
        order_statuses=statuses,
        verifications_per_order=verifications,
        releases_per_order=releases,
        outbox_statuses=Counter(str(s) for s, _ in outbox_rows),
        outbox_control_ids=frozenset(str(c) for _, c in outbox_rows),
    )


def wait_for_verification(
    database_url: str, sending_application: str, messages: int, timeout: float = 180.0
) -> PipelineCounts:
    """Counts once every one of `messages` has its order read and verified (or at timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = pipeline_counts(database_url, sending_application)
        done = (
            sum(counts.orders_per_message.values()) >= messages
            and counts.orders_per_message.get(0, 0) == 0
            and counts.verifications_per_order.get(0, 0) == 0
        )
        if done or time.monotonic() > deadline:
            return counts
        time.sleep(1.0)
