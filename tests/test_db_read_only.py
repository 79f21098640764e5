"""A SQLite connection that finds its file read-only is dropped, not kept read-only for good."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from labintake.db import make_engine


def test_a_connection_refused_a_write_as_read_only_is_replaced(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (v INTEGER)"))
        with engine.connect() as connection:
            # What a connection opened on an immutable file is: read-only for its whole life.
            connection.exec_driver_sql("PRAGMA query_only=ON")
            first = connection.connection.dbapi_connection
            with pytest.raises(OperationalError, match="readonly database") as raised:
                connection.execute(text("INSERT INTO t VALUES (1)"))
            assert raised.value.connection_invalidated
        # The pool hands out a new connection, which writes.
        with engine.begin() as connection:
            assert connection.connection.dbapi_connection is not first
            connection.execute(text("INSERT INTO t VALUES (2)"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT v FROM t")).scalars().all() == [2]
    finally:
        engine.dispose()
