"""Loaded by every Python process of a `benchmarks.pipeline --lock-holds` run (this folder is
put first on their PYTHONPATH); does nothing unless LABINTAKE_BENCH_LOCK_HOLDS names a folder.

For each write transaction of the process, the time from the end of its first INSERT, UPDATE
or DELETE (SQLite holds the database's write lock from then on; any wait for the lock is
before it) to the start of its COMMIT (the commit's own fsync is not in it), with the thread
and the first write statement. Written as JSON to
``holds-PID.json`` in that folder every 2 s and at exit. Not part of labintake."""

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

    @event.listens_for(Engine, "after_cursor_execute")
    def _first_write(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if getattr(_state, "first", None) is None:
            verb = statement.lstrip()[:6].upper()
            if verb in ("INSERT", "UPDATE", "DELETE"):
                what = " ".join(statement.split()[:4])[:60]
                _state.first = (time.perf_counter(), what, threading.current_thread().name)

    @event.listens_for(Engine, "commit")
    def _commit(conn):  # type: ignore[no-untyped-def]
        first = getattr(_state, "first", None)
        if first is not None:
            _holds.append((time.perf_counter() - first[0], first[1], first[2]))
            _state.first = None

    @event.listens_for(Engine, "rollback")
    def _rollback(conn):  # type: ignore[no-untyped-def]
        _state.first = None

    def _dump() -> None:
        if _holds:
            path = os.path.join(FOLDER, f"holds-{os.getpid()}.json")
            with open(path + ".tmp", "w") as out:
                json.dump(list(_holds), out)
            os.replace(path + ".tmp", path)

    def _every_two_seconds() -> None:
        while True:
            time.sleep(2)
            _dump()

    atexit.register(_dump)
    threading.Thread(target=_every_two_seconds, name="lock-holds", daemon=True).start()
