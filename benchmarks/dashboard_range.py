"""The dashboard's date-range section (turnaround by stage, daily trend, coders) against a
month of orders, on SQLite and PostgreSQL.

    .venv/bin/python -m benchmarks.dashboard_range                      # 3,000 orders a day
    .venv/bin/python -m benchmarks.dashboard_range --per-day 500 --backends sqlite
    .venv/bin/python -m benchmarks.dashboard_range --database var/replay.sqlite3

Seeds 30 days of orders in bulk (migrated with Alembic): 85 % automatic (verified, released,
delivered within minutes), 15 % held (a held verification, a coder's claim, an office query
for a third of them, a release or reject by the coder, or still held), with the events the
workflow writes; then ANALYZE. Times, in-process (routing, queries, template), the section
for the last 7 and the last 30 days and, as the peer measured in the same run, the existing
dashboard page (`/dashboard?refresh=1`, the 24-hour figures). Prints p50/max per case.
`--database FILE` measures an existing SQLite file instead (such as one built by
`python -m benchmarks.replay_db`), for the range that covers its orders.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from benchmarks.databases import PG_ADMIN_URL, fresh_postgresql_database
from labintake.auth.accounts import create_user
from labintake.auth.roles import Role
from labintake.auth.tokens import create_token
from labintake.config import Settings
from labintake.db import make_engine, migrate, session_scope
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order, OrderEvent, Verification
from labintake.models.queue import OfficeQuery
from labintake.web.app import create_app
from labintake.web.routes import dashboard

CODERS = [f"coder{i:02d}" for i in range(8)]
DAYS = 30


def seed(engine: Engine, per_day: int, rng: random.Random) -> int:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with session_scope(engine) as session:
        for coder in CODERS:
            create_user(session, coder, Role.CODER, "bench-password-1234")
    order_id = event_id = 0
    with engine.begin() as conn:
        for day in range(DAYS, 0, -1):
            messages: list[dict[str, Any]] = []
            orders: list[dict[str, Any]] = []
            checks: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            queries: list[dict[str, Any]] = []
            for _ in range(per_day):
                order_id += 1
                received = today - timedelta(days=day, seconds=-rng.randint(0, 86399))
                held = rng.random() < 0.15
                verified = received + timedelta(seconds=rng.randint(5, 90))
                status, released, delivered, coder = "delivered", None, None, None
                if held:
                    coder = rng.choice(CODERS)
                    touched = verified + timedelta(minutes=rng.randint(5, 600))
                    events.append(_event(order_id, touched, coder, "claimed"))
                    if rng.random() < 0.33:
                        asked = touched + timedelta(minutes=5)
                        answered = asked + timedelta(minutes=rng.randint(30, 2880))
                        queries.append(
                            {
                                "order_id": order_id,
                                "created_at": asked,
                                "actor": coder,
                                "status": "answered",
                                "question": "synthetic",
                                "indicators": [],
                                "choices": [],
                                "closed_at": answered,
                                "detail": {},
                            }
                        )
                        touched = answered
                    outcome = rng.random()
                    done = touched + timedelta(minutes=rng.randint(2, 120))
                    if outcome < 0.75:
                        released = done
                        events.append(_event(order_id, done, coder, "released"))
                    elif outcome < 0.85:
                        status = "rejected"
                        events.append(_event(order_id, done, coder, "rejected"))
                    else:
                        status = "held"
                else:
                    released = verified + timedelta(minutes=rng.randint(1, 15))
                    events.append(_event(order_id, released, "release-job", "released"))
                if released is not None:
                    delivered = released + timedelta(seconds=rng.randint(2, 600))
                else:
                    status = status if status != "delivered" else "held"
                events.append(_event(order_id, verified, "verifier", "verified"))
                checks.append(
                    {
                        "order_id": order_id,
                        "at": verified,
                        "table_versions": {},
                        "outcome": "held" if held else "verified",
                    }
                )
                messages.append(
                    {
                        "id": order_id,
                        "received_at": received,
                        "sending_application": "EHR",
                        "sending_facility": f"CLINIC{order_id % 30:02d}",
                        "control_id": f"CTL{order_id:09d}",
                        "message_type": "ORM^O01",
                        "version": "2.5.1",
                        "raw": b"MSH|^~\\&|EHR|CLINIC|LAB|LAB|20260101||ORM^O01|X|P|2.5.1\r",
                        "ack": b"",
                        "ack_code": "AA",
                        "status": "read",
                    }
                )
                orders.append(
                    {
                        "id": order_id,
                        "message_id": order_id,
                        "group_index": 1,
                        "status": status,
                        "office_name": f"Office {order_id % 200}",
                        "sending_facility": f"CLINIC{order_id % 30:02d}",
                        "details": {},
                        "created_at": received,
                        "updated_at": received,
                        "verified_at": verified,
                        "released_at": released,
                        "delivered_at": delivered,
                        "due_at": received + timedelta(hours=24),
                        "assigned_to": coder if status == "held" else None,
                    }
                )
            for i, row in enumerate(events):
                row["id"] = event_id + i + 1
            event_id += len(events)
            conn.execute(insert(InboundMessage), messages)
            conn.execute(insert(Order), orders)
            conn.execute(insert(Verification), checks)
            conn.execute(insert(OrderEvent), events)
            if queries:
                conn.execute(insert(OfficeQuery), queries)
        if engine.dialect.name == "postgresql":
            for table, n in (("lab_order", order_id), ("order_event", event_id)):
                conn.execute(text(f"SELECT setval('{table}_id_seq', :n)"), {"n": n})
    analyze(engine)
    return order_id


def _event(order_id: int, at: datetime, actor: str, action: str) -> dict[str, Any]:
    return {"order_id": order_id, "at": at, "actor": actor, "action": action, "detail": {}}


def analyze(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()


def measure(url: str, cases: dict[str, str], repeat: int) -> dict[str, list[float]]:
    engine = make_engine(url)
    with session_scope(engine) as session:
        manager = f"bench-manager-{uuid.uuid4().hex[:6]}"
        create_user(session, manager, Role.MANAGER, "bench-password-1234")
        token = create_token(session, manager)
    settings = Settings(development=True, database_url=url)
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {token}"
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, path in cases.items():
            dashboard._range_cache.clear()  # computed afresh each time, not the 30 s cache
            started = time.perf_counter()
            response = client.get(path, headers={"HX-Request": "true"})
            timings[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text[:300]
    engine.dispose()
    return timings


def cases_for(last: date) -> dict[str, str]:
    week = (last - timedelta(days=6)).isoformat()
    month = (last - timedelta(days=DAYS - 1)).isoformat()
    return {
        "range: last 7 days": f"/dashboard/turnaround?start={week}&end={last.isoformat()}",
        "range: last 30 days": f"/dashboard/turnaround?start={month}&end={last.isoformat()}",
        "peer: /api/stats (24 h)": "/api/stats",
        "peer: /api/stats (7 days)": "/api/stats?window_hours=168",
    }


def report(title: str, timings: dict[str, list[float]]) -> None:
    print(title)
    peer = statistics.median(timings["peer: /api/stats (24 h)"])
    for name, values in timings.items():
        p50 = statistics.median(values)
        print(f"  {name:28s} p50 {p50:8.1f} ms  max {max(values):8.1f} ms  x{p50 / peer:5.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-day", type=int, default=3000, help="orders received a day")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", type=Path, help="measure this SQLite file instead")
    parser.add_argument("--pg-admin", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    if args.database:
        url = f"sqlite:///{args.database}"
        migrate(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            newest = conn.execute(text("SELECT max(created_at) FROM lab_order")).scalar_one()
        engine.dispose()
        last = datetime.fromisoformat(str(newest)).date()
        report(f"{args.database}", measure(url, cases_for(last), args.repeat))
        return 0
    rng = random.Random(12)
    last = datetime.now(UTC).date() - timedelta(days=1)
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as workdir:
                url = f"sqlite:///{Path(workdir) / f'range-{uuid.uuid4().hex[:6]}.sqlite3'}"
                migrate(url)
                engine = make_engine(url)
                n = seed(engine, args.per_day, rng)
                engine.dispose()
                report(f"sqlite, {n} orders", measure(url, cases_for(last), args.repeat))
        else:
            with fresh_postgresql_database("labintake_bench", admin_url=args.pg_admin) as url:
                engine = make_engine(url)
                n = seed(engine, args.per_day, rng)
                engine.dispose()
                report(f"postgresql, {n} orders", measure(url, cases_for(last), args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
