"""Retention of API idempotency keys: the keys older than the retention are deleted.

A key (`labintake.queue.idempotency`) protects a client's retries of one request; retries
come within minutes or hours, so a key kept for `idempotency_key_retention_days` (7 by
default) has done its work. Without a purge the table grows by one row per keyed API action
for ever.

The keys go oldest first in batches of `batch` rows, each batch its own short transaction
(found through the index on `created_at`): a large backlog never holds a long write
transaction, on SQLite where intake waits for the one write lock, or on PostgreSQL. Running
twice, or on two instances at once, deletes nothing twice (the scheduler also runs it under
a lease).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from labintake.db import session_scope, utcnow
from labintake.models.users import IdempotencyKey

log = logging.getLogger(__name__)

__all__ = ["PURGE_BATCH", "purge_idempotency_keys"]

PURGE_BATCH = 1000


def purge_idempotency_keys(
    engine: Engine,
    retention_days: int,
    *,
    batch: int = PURGE_BATCH,
    now: datetime | None = None,
) -> int:
    """Delete the keys created more than `retention_days` before `now`; how many went."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    total = 0
    while True:
        with session_scope(engine) as session:
            oldest = list(
                session.execute(
                    select(col(IdempotencyKey.id))
                    .where(col(IdempotencyKey.created_at) < cutoff)
                    .order_by(col(IdempotencyKey.created_at), col(IdempotencyKey.id))
                    .limit(batch)
                ).scalars()
            )
            if not oldest:
                break
            deleted = session.execute(
                delete(IdempotencyKey)
                .where(col(IdempotencyKey.id).in_(oldest))
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
        total += int(deleted)
        if len(oldest) < batch:
            break
    if total:
        log.info(
            "purged %d idempotency keys older than %d days",
            total,
            retention_days,
            extra={"event": "idempotency_keys_purged"},
        )
    return total
