"""The queue's calls into verification and release (other packages' public functions)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from labintake.config import Settings
from labintake.models.orders import Order


def reverify(session: Session, settings: Settings, order_id: int, actor: str) -> Any:
    """Run the verification rules over the stored order again, in the caller's transaction."""
    from labintake.codes.tables import get_code_tables
    from labintake.interfaces import load_interfaces
    from labintake.verification.rule_settings import rules_for
    from labintake.verification.service import verify_order

    return verify_order(
        session,
        order_id,
        actor,
        get_code_tables(settings),
        registry=load_interfaces(settings.interfaces_dir),
        rules=rules_for(settings),
    )


def release(session: Session, order: Order, actor: str, modifiers: Iterable[str]) -> Any:
    """Release the order to the LIS through the outbox (same transaction, in which the queue's
    guard already took the order's row_version)."""
    from labintake.release.outbox import enqueue_release

    return enqueue_release(session, order, actor, modifiers=tuple(modifiers), version_claimed=True)


def reprocess(engine: Engine, settings: Settings, message_id: int, actor: str) -> Any:
    """Read a message in the error queue again (the reader's own transaction)."""
    from labintake.interfaces import load_interfaces
    from labintake.reading.plan import reading_limits
    from labintake.reading.reprocess import reprocess_message

    registry = load_interfaces(settings.interfaces_dir)
    return reprocess_message(engine, registry, message_id, actor, reading_limits(settings))


def error_queue(engine: Engine, limit: int, after_id: int) -> list[Any]:
    from labintake.reading.reprocess import error_queue as queued_errors

    return list(queued_errors(engine, limit=limit, after_id=after_id))
