"""Reading stored messages into orders: the worker, the error queue and reprocessing.

worker.read_pending(engine, registry, limit=500) -> int        one batch of received messages
worker.read_until_empty(engine, registry, limit=500) -> int    the whole backlog
reprocess.error_queue(engine, limit, after_id) -> [QueuedError] messages in status error
reprocess.reprocess_message(engine, registry, message_id, actor) -> ReprocessOutcome

Nothing is imported here: the reading sandbox imports `labintake.reading.plan` alone, and must
not load the database side (SQLAlchemy, the models) with this package.
"""
