"""Reading stored messages into orders: the worker, the error queue and reprocessing.

read_pending(engine, registry, limit=500) -> int      one batch of received messages
read_until_empty(engine, registry, limit=500) -> int  the whole backlog
error_queue(engine, limit, after_id) -> [QueuedError] messages in status error
reprocess_message(engine, registry, message_id, actor) -> ReprocessOutcome
"""

from labintake.reading.reprocess import (
    QueuedError,
    ReprocessOutcome,
    count_errors,
    error_queue,
    reprocess_message,
)
from labintake.reading.worker import read_pending, read_until_empty

__all__ = [
    "QueuedError",
    "ReprocessOutcome",
    "count_errors",
    "error_queue",
    "read_pending",
    "read_until_empty",
    "reprocess_message",
]
