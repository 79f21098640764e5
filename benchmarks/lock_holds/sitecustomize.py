"""Loaded by every Python process of a `benchmarks.pipeline --lock-holds` run (this folder is
put first on their PYTHONPATH); does nothing unless LABINTAKE_BENCH_LOCK_HOLDS names a folder.

For each write transaction of the process, the time from the end of its first INSERT, UPDATE
or DELETE (SQLite holds the database's write lock from then on; any wait for the lock is
before it) to the start of its COMMIT (the commit's own fsync is not in it), with the thread
and the first write statement. Also each wait for the lock: from a statement's first
"database is locked" refusal to the commit of the transaction that got it at last (intake's
writer retries a locked database rather than waiting in SQLite's busy handler). Written as
JSON to ``holds-PID.json`` and ``waits-PID.json`` in that folder every 2 s and at exit. Not
part of labintake."""

from __future__ import annotations

import atexit
import json
import os
import threading
import time

FOLDER = os.environ.get("LABINTAKE_BENCH_LOCK_HOLDS", "")

if FOLDER:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    _state = threading.local()
    _holds: list[tuple[float, str, str]] = []
    _waits: list[tuple[float, str]] = []

    @event.listens_for(Engine, "handle_error")
    def _refused(context):  # type: ignore[no-untyped-def]
        text = str(context.original_exception)
        if ("locked" in text or "busy" in text) and getattr(_state, "waiting", None) is None:
            _state.waiting = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def _first_write(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if getattr(_state, "first", None) is None:
            verb = statement.lstrip()[:6].upper()
            if verb in ("INSERT", "UPDATE", "DELETE"):
                what = " ".join(statement.split()[:4])[:60]
                _state.first = (time.perf_counter(), what, threading.current_thread().name)

    @event.listens_for(Engine, "commit")
    def _commit(conn):  # type: ignore[no-untyped-def]
        waiting = getattr(_state, "waiting", None)
        if waiting is not None:
            _waits.append((time.perf_counter() - waiting, threading.current_thread().name))
            _state.waiting = None
        first = getattr(_state, "first", None)
        if first is not None:
            _holds.append((time.perf_counter() - first[0], first[1], first[2]))
            _state.first = None

    @event.listens_for(Engine, "rollback")
    def _rollback(conn):  # type: ignore[no-untyped-def]
        _state.first = None

    def _dump() -> None:
        for name, rows in (("holds", _holds), ("waits", _waits)):
            if rows:
                path = os.path.join(FOLDER, f"{name}-{os.getpid()}.json")
                with open(path + ".tmp", "w") as out:
                    json.dump(list(rows), out)
                os.replace(path + ".tmp", path)

    def _every_two_seconds() -> None:
        while True:
            time.sleep(2)
            _dump()

    atexit.register(_dump)
    threading.Thread(target=_every_two_seconds, name="lock-holds", daemon=True).start()
