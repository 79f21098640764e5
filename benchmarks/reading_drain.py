"""Backlog drain: how fast the reading worker turns stored messages into orders.

    .venv/bin/python -m benchmarks.reading_drain                 # 5000 messages, SQLite
    .venv/bin/python -m benchmarks.reading_drain --count 20000 --batch 500
    .venv/bin/python -m benchmarks.reading_drain --database-url postgresql+psycopg://...

Stores `--count` synthetic nine-segment ORM^O01 messages as intake leaves them (status
`received`) in a fresh SQLite file (WAL, synchronous FULL) under `--workdir`, or in the
PostgreSQL database given (its tables are emptied first: use a scratch database), then times
`read_until_empty` and prints messages per second. Target: >= 500 messages/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from benchmarks.databases import store_received
from labintake.db import make_engine, migrate
from labintake.interfaces import load_interfaces
from labintake.reading.worker import read_until_empty

TARGET = 500.0
REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'drain.sqlite3'}"
        migrate(url)
        engine = make_engine(url)
        store_received(engine, args.count, "DRAIN")
        registry = load_interfaces(REPO / "interfaces")
        started = time.perf_counter()
        read = read_until_empty(engine, registry, limit=args.batch)
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            orders = conn.execute(text("SELECT count(*) FROM lab_order")).scalar_one()
            statuses = dict(
                conn.execute(
                    text("SELECT status, count(*) FROM inbound_message GROUP BY status")
                ).all()
            )
        engine.dispose()

    rate = read / seconds if seconds else 0.0
    print(f"backend            {url.split(':', 1)[0]}")
    print(f"messages read      {read} in {seconds:.2f} s (batch {args.batch})")
    print(f"orders created     {orders}")
    print(f"message statuses   {statuses}")
    print(f"drain rate         {rate:,.0f} messages/s (target >= {TARGET:.0f})")
    return 0 if rate >= TARGET and statuses.get("received", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
