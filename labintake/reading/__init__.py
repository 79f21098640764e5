"""Reading stored messages into orders: the worker, the error queue and reprocessing.

read_pending(engine, registry, limit=500) -> int      one batch of received messages
read_until_empty(engine, registry, limit=500) -> int  the whole backlog
error_queue(engine, limit, after_id) -> [QueuedError] messages in status error
reprocess_message(engine, registry, message_id, actor) -> ReprocessOutcome

These names are imported on first use: the reading sandbox imports `labintake.reading.plan`
alone, and must not load the database side (SQLAlchemy, the models) with this package.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labintake.reading.reprocess import (
        QueuedError,
        ReprocessOutcome,
        count_errors,
        error_queue,
        reprocess_message,
    )
    from labintake.reading.worker import read_pending, read_until_empty

_MODULES = {
    "QueuedError": "labintake.reading.reprocess",
    "ReprocessOutcome": "labintake.reading.reprocess",
    "count_errors": "labintake.reading.reprocess",
    "error_queue": "labintake.reading.reprocess",
    "reprocess_message": "labintake.reading.reprocess",
    "read_pending": "labintake.reading.worker",
    "read_until_empty": "labintake.reading.worker",
}

__all__ = [
    "QueuedError",
    "ReprocessOutcome",
    "count_errors",
    "error_queue",
    "read_pending",
    "read_until_empty",
    "reprocess_message",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
