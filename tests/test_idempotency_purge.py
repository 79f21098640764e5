"""Idempotency keys are deleted after their retention, oldest first, in short batches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.config import Settings
from labintake.db import session_scope, utcnow
from labintake.errors import IdempotencyKeyReusedError
from labintake.jobs.idempotency import purge_idempotency_keys
from labintake.jobs.scheduler import SCHEDULE, JobContext, run_job
from labintake.models.users import IdempotencyKey
from labintake.queue.idempotency import bind_idempotency_key


def _key(engine: Engine, key: str, age_days: float, order_id: int = 1) -> None:
    with session_scope(engine) as session:
        bind_idempotency_key(session, "ann", key, "reject", order_id, {"reason": key})
    with session_scope(engine) as session:
        row = session.exec(select(IdempotencyKey).where(IdempotencyKey.key == key)).one()
        row.created_at = utcnow() - timedelta(days=age_days)
        session.add(row)


def _keys(engine: Engine) -> list[str]:
    with Session(engine) as session:
        query = select(IdempotencyKey.key).order_by(col(IdempotencyKey.key))
        return list(session.exec(query).all())


def test_keys_past_the_retention_go_in_batches_and_recent_ones_stay(engine: Engine) -> None:
    for n in range(5):
        _key(engine, f"old-{n}", age_days=8 + n)
    _key(engine, "recent-1", age_days=6.9)
    _key(engine, "recent-2", age_days=0)
    deletes: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM API_IDEMPOTENCY_KEY"):
            deletes.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert purge_idempotency_keys(engine, retention_days=7, batch=2) == 5
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(deletes) == 3  # 2 + 2 + 1, each in its own transaction
    assert _keys(engine) == ["recent-1", "recent-2"]
    assert purge_idempotency_keys(engine, retention_days=7, batch=2) == 0


def test_a_purged_key_may_name_a_new_request_and_a_kept_one_may_not(engine: Engine) -> None:
    _key(engine, "k-old", age_days=30)
    _key(engine, "k-new", age_days=1)
    assert purge_idempotency_keys(engine, retention_days=7) == 1
    with session_scope(engine) as session:  # another order: a new request, taken
        bind_idempotency_key(session, "ann", "k-old", "reject", 2, {"reason": "x"})
    with pytest.raises(IdempotencyKeyReusedError), session_scope(engine) as session:
        bind_idempotency_key(session, "ann", "k-new", "reject", 2, {"reason": "x"})
    assert _keys(engine) == ["k-new", "k-old"]


def test_the_daily_job_uses_the_retention_setting(engine: Engine, settings: Settings) -> None:
    assert SCHEDULE["purge_idempotency_keys"][0] == "cron"
    _key(engine, "a", age_days=3)
    _key(engine, "b", age_days=1)
    context = JobContext(
        engine=engine, settings=settings.model_copy(update={"idempotency_key_retention_days": 2})
    )
    assert run_job("purge_idempotency_keys", context) == 1
    assert _keys(engine) == ["b"]


def test_a_retention_under_one_day_is_refused(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="idempotency_key_retention_days"):
        Settings.model_validate(settings.model_dump() | {"idempotency_key_retention_days": 0})
    with pytest.raises(ValueError, match="batch"):
        purge_idempotency_keys(None, 7, batch=0)  # type: ignore[arg-type]
