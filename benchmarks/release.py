"""Release benchmark: verified orders to a stub LIS over MLLP, through the real outbox.

Run ``python -m benchmarks.release`` (about a minute) or with ``--orders 500`` for a quick
look. The database is a fresh SQLite file (WAL, synchronous FULL; ``--database-url`` for
PostgreSQL, to which orders are added) with N synthetic verified orders (two tests, two
diagnoses, an ABN modifier on one test). Stages, each timed on its own:

1. build: ``build_order_message`` for N orders in memory (the ER7 writer; the hl7apy element
   tree builder it replaced is timed on a sample for comparison);
2. release: ``release_verified`` reads the verified orders, builds their messages and writes
   the outbox rows, order states and history (build + outbox write);
3. delivery: a ``Sender`` claims the outbox, sends each message over one persistent MLLP
   connection to ``labintake.release.stub_lis`` (a subprocess, so it does not share our
   interpreter), waits for each ACK and records ``delivered``;
4. end to end: N more verified orders added to the same database, and the service's two
   background workers (``release`` and ``deliver``, threads of one process as in the
   service, same batch sizes and idle sleeps) started together; timed from start until
   every order is ``delivered``.

The table shows orders/s per stage with PASS/FAIL against 500 orders/s for release,
delivery and end to end; figures are saved as JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Engine

from labintake.background import BackgroundWorkers
from labintake.config import Settings
from labintake.db import make_engine, migrate, utcnow
from labintake.hl7.order_builder import (
    LisProfile,
    OutboundDiagnosis,
    OutboundOrder,
    OutboundTest,
    build_order_message,
)
from labintake.jobs.scheduler import JobContext, deliver, run_job
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order, OrderDiagnosis, OrderTest
from labintake.release.bulk import release_verified
from labintake.release.connection import Endpoint
from labintake.release.delivery import RetryPolicy
from labintake.release.sender import Sender, SenderOptions, deliver_until_idle
from tests.hl7_tree_builder import build_order_message_with_tree

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGET = 500.0


def fill(engine: Engine, count: int) -> int:
    """`count` more verified orders with tests and diagnoses (synthetic patients), bulk
    inserted; returns the highest order id before them."""
    now = utcnow()
    with engine.begin() as conn:
        before = conn.execute(select(func.max(Order.id))).scalar() or 0
        first_message = conn.execute(select(func.max(InboundMessage.id))).scalar() or 0
        conn.execute(
            insert(InboundMessage),
            [
                {
                    "received_at": now,
                    "sending_application": "EHR",
                    "sending_facility": "BENCHCLINIC",
                    "control_id": f"BENCH{before + i:08d}",
                    "message_type": "ORM^O01",
                    "version": "2.5.1",
                    "raw": b"MSH|^~\\&|EHR|BENCHCLINIC",
                    "ack_code": "AA",
                    "ack": b"MSA|AA",
                    "status": "read",
                }
                for i in range(count)
            ],
        )
        message_ids = [
            row[0]
            for row in conn.execute(
                select(InboundMessage.id).where(InboundMessage.id > first_message)  # type: ignore[call-overload, operator]
            )
        ]
        conn.execute(
            insert(Order),
            [
                {
                    "message_id": message_id,
                    "group_index": 0,
                    "status": "verified",
                    "row_version": 1,
                    "sending_application": "EHR",
                    "sending_facility": "BENCHCLINIC",
                    "order_control": "NW",
                    "placer_order_number": f"PO{i:08d}",
                    "filler_order_number": "",
                    "patient_mrn": f"MRN{i:08d}",
                    "patient_family_name": "Benchmark",
                    "patient_given_name": f"Synthetic{i}",
                    "patient_birth_date": date(1950, 1, 1),
                    "patient_sex": "F",
                    "payer_company_id": "MCR",
                    "payer_company_name": "Medicare Part B",
                    "provider_npi": "1234567893",
                    "provider_family_name": "Example",
                    "provider_given_name": "Pat",
                    "office_name": "Bench Clinic",
                    "date_of_service": now.date(),
                    "ordered_at": now,
                    "details": {},
                    "created_at": now,
                    "updated_at": now,
                    "verified_at": now,
                    "due_at": now,
                }
                for i, message_id in enumerate(message_ids)
            ],
        )
        order_ids = [
            row[0]
            for row in conn.execute(select(Order.id).where(Order.id > before))  # type: ignore[call-overload, operator]
        ]
        tests = []
        diagnoses = []
        for order_id in order_ids:
            tests.append(
                {
                    "order_id": order_id,
                    "seq": 1,
                    "sent_code": "LIPID",
                    "sent_text": "Lipid panel",
                    "local_code": "LIPID",
                    "loinc": "24331-1",
                    "cpt": "80061",
                    "units": 1,
                    "modifiers": "",
                }
            )
            tests.append(
                {
                    "order_id": order_id,
                    "seq": 2,
                    "sent_code": "A1C",
                    "sent_text": "Hemoglobin A1c",
                    "local_code": "A1C",
                    "loinc": "4548-4",
                    "cpt": "83036",
                    "units": 1,
                    "modifiers": "GA",
                }
            )
            diagnoses.append(
                {
                    "order_id": order_id,
                    "seq": 1,
                    "code": "E78.5",
                    "text": "Hyperlipidemia",
                    "source": "sender",
                    "active": True,
                }
            )
            diagnoses.append(
                {
                    "order_id": order_id,
                    "seq": 2,
                    "code": "E11.9",
                    "text": "Type 2 diabetes",
                    "source": "sender",
                    "active": True,
                }
            )
        conn.execute(insert(OrderTest), tests)
        conn.execute(insert(OrderDiagnosis), diagnoses)
    if engine.dialect.name == "postgresql":
        analyze(engine)
    return int(before)


def analyze(engine: Engine) -> None:
    """Planner statistics, as autovacuum keeps them in a running PostgreSQL database, so the
    figures are those of a database in its ordinary state (the outbox claim no longer depends
    on them: docs/benchmarks.md, "PostgreSQL after a burst")."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


def start_stub() -> tuple[subprocess.Popen[str], int]:
    """The stub LIS in its own process (its CPU is not the sender's); returns it and its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "labintake.release.stub_lis", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r":(\d+)\s*$", line)
    if not found:
        process.kill()
        raise RuntimeError(f"stub LIS did not start: {line!r}")
    return process, int(found.group(1))


def delivered(engine: Engine, after_id: int = 0) -> int:
    """Orders delivered among those with an id above `after_id`."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(Order)
                .where(Order.status == "delivered", Order.id > after_id)  # type: ignore[arg-type, operator]
            ).scalar_one()
        )


def outbox_rows(engine: Engine, after_id: int = 0) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM outbox WHERE order_id > :after"), {"after": after_id}
            ).scalar_one()
        )


def sample_order(i: int, now: datetime) -> OutboundOrder:
    """The outbound form of the orders `fill` writes (for the in-memory build stage)."""
    return OutboundOrder(
        order_id=i + 1,
        placer_order_number=f"PO{i:08d}",
        placer_facility="BENCHCLINIC",
        patient_mrn=f"MRN{i:08d}",
        patient_family_name="Benchmark",
        patient_given_name=f"Synthetic{i}",
        patient_birth_date=date(1950, 1, 1),
        patient_sex="F",
        payer_company_id="MCR",
        payer_company_name="Medicare Part B",
        provider_npi="1234567893",
        provider_family_name="Example",
        provider_given_name="Pat",
        office_name="Bench Clinic",
        date_of_service=now.date(),
        ordered_at=now,
        tests=(
            OutboundTest(1, "LIPID", "Lipid panel", "24331-1", "80061"),
            OutboundTest(2, "A1C", "Hemoglobin A1c", "4548-4", "83036", modifiers=("GA",)),
        ),
        diagnoses=(
            OutboundDiagnosis("E78.5", "Hyperlipidemia"),
            OutboundDiagnosis("E11.9", "Type 2 diabetes"),
        ),
    )


def time_build(orders: int, tree_sample: int) -> tuple[float, float, bool]:
    """Seconds to build `orders` messages with the writer; seconds per message with the
    hl7apy tree builder over `tree_sample` of them; whether the two wrote the same bytes."""
    profile = LisProfile()
    now = utcnow()
    sample = [sample_order(i, now) for i in range(orders)]
    started = time.perf_counter()
    built = [build_order_message(o, profile, f"LI{i:018d}", now) for i, o in enumerate(sample)]
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    tree = [
        build_order_message_with_tree(o, profile, f"LI{i:018d}", now)
        for i, o in enumerate(sample[:tree_sample])
    ]
    per_tree = (time.perf_counter() - started) / max(1, tree_sample)
    return seconds, per_tree, tree == built[:tree_sample]


def delivery_sender(engine: Engine, port: int, batch: int) -> Sender:
    return Sender(
        engine,
        Endpoint("127.0.0.1", port, ack_timeout=10.0),
        RetryPolicy(max_attempts=5, base_seconds=0.1, cap_seconds=1.0),
        options=SenderOptions(batch_size=batch, commit_every=min(batch, 100)),
    )


def run_stages(engine: Engine, port: int, orders: int, batch: int, after_id: int) -> dict[str, Any]:
    """Release, then delivery, one after the other on `engine`."""
    started = time.perf_counter()
    released = 0
    while released < orders:
        moved = release_verified(engine, limit=500)
        if not moved:
            break
        released += moved
    release_seconds = time.perf_counter() - started
    if engine.dialect.name == "postgresql":
        analyze(engine)  # untimed: the outbox went from empty to N rows

    sender = delivery_sender(engine, port, batch)
    started = time.perf_counter()
    deliver_until_idle(sender)
    delivery_seconds = time.perf_counter() - started
    sender.close()
    return {
        "released": released,
        "release_seconds": release_seconds,
        "delivered": delivered(engine, after_id),
        "delivery_seconds": delivery_seconds,
        "outbox_rows": outbox_rows(engine, after_id),
    }


def run_end_to_end(
    database_url: str, engine: Engine, port: int, orders: int, after_id: int, timeout: float
) -> dict[str, Any]:
    """The service's `release` and `deliver` workers (the same functions, job lease included,
    on the same BackgroundWorkers) together, until every order with an id above `after_id`
    is delivered."""
    settings = Settings(
        database_url=database_url, lis_host="127.0.0.1", lis_port=port, development=True
    )
    context = JobContext(engine=engine, settings=settings)
    workers = BackgroundWorkers()  # the service's idle and error sleeps
    workers.register("release", lambda: run_job("release_verified", context) or 0)
    workers.register("deliver", lambda: deliver(context))
    done = 0
    started = time.perf_counter()
    workers.start()
    try:
        while time.perf_counter() - started < timeout:
            done = delivered(engine, after_id)
            if done >= orders:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - started
    finally:
        workers.stop()
        context.close()
    return {
        "e2e_delivered": done,
        "e2e_seconds": seconds,
        "e2e_outbox_rows": outbox_rows(engine, after_id),
    }


def run(database_url: str, orders: int, batch: int) -> dict[str, Any]:
    build_seconds, tree_per_message, same_bytes = time_build(orders, min(orders, 50))
    stub, port = start_stub()
    try:
        migrate(database_url)
        engine = make_engine(database_url)
        first = fill(engine, orders)
        staged = run_stages(engine, port, orders, batch, first)
        # End to end on N more verified orders (the first N are all delivered by now).
        second = fill(engine, orders)
        e2e = run_end_to_end(
            database_url, engine, port, orders, second, timeout=max(120.0, orders / 10)
        )
        engine.dispose()
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    result: dict[str, Any] = {
        "orders": orders,
        "build_seconds": build_seconds,
        "build_rate": orders / build_seconds,
        "tree_builder_ms_per_message": tree_per_message * 1000,
        "tree_builder_same_bytes": same_bytes,
        **staged,
        **e2e,
    }
    result["release_rate"] = staged["released"] / staged["release_seconds"]
    result["delivery_rate"] = staged["delivered"] / staged["delivery_seconds"]
    result["stages_rate"] = staged["delivered"] / (
        staged["release_seconds"] + staged["delivery_seconds"]
    )
    result["end_to_end_rate"] = e2e["e2e_delivered"] / e2e["e2e_seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200, help="messages claimed per round")
    parser.add_argument("--database-url", default=None, help="default: fresh SQLite files")
    parser.add_argument("--workdir", default=None, help="where the SQLite files go")
    args = parser.parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir or RESULTS_DIR) as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'release-bench.sqlite3'}"
        result = run(url, args.orders, args.batch)
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite (WAL, synchronous FULL)"
    n = args.orders

    def verdict(rate: float, count: int) -> str:
        return "PASS" if rate >= TARGET and count == n else "FAIL"

    rows = [
        ("build (ER7 writer, in memory)", n, result["build_seconds"], result["build_rate"], "", ""),
        (
            "release (build + outbox write)",
            result["released"],
            result["release_seconds"],
            result["release_rate"],
            f">= {TARGET:.0f}/s",
            verdict(result["release_rate"], result["released"]),
        ),
        (
            "delivery to stub LIS (MLLP, ACK each)",
            result["delivered"],
            result["delivery_seconds"],
            result["delivery_rate"],
            f">= {TARGET:.0f}/s",
            verdict(result["delivery_rate"], result["delivered"]),
        ),
        (
            "release then delivery (stages 2+3)",
            result["delivered"],
            result["release_seconds"] + result["delivery_seconds"],
            result["stages_rate"],
            "",
            "",
        ),
        (
            "end to end, verified -> delivered",
            result["e2e_delivered"],
            result["e2e_seconds"],
            result["end_to_end_rate"],
            f">= {TARGET:.0f}/s",
            verdict(result["end_to_end_rate"], result["e2e_delivered"]),
        ),
    ]
    load = os.getloadavg()
    print(
        f"\nrelease benchmark: {n} orders, {backend}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load[0]:.1f}"
    )
    print(f"{'stage':<40} {'orders':>7} {'seconds':>8} {'orders/s':>9}  {'target':<9} result")
    for name, count, seconds, rate, target, outcome in rows:
        print(f"{name:<40} {count:>7} {seconds:>8.2f} {rate:>9.0f}  {target:<9} {outcome}")
    print(
        f"hl7apy element tree builder: {result['tree_builder_ms_per_message']:.1f} ms per "
        f"message (same bytes as the writer: {result['tree_builder_same_bytes']})"
    )
    once = result["outbox_rows"] == result["delivered"] == n
    once_e2e = result["e2e_outbox_rows"] == result["e2e_delivered"] == n
    print(
        f"outbox rows {result['outbox_rows']} / {result['e2e_outbox_rows']}, delivered "
        f"{result['delivered']} / {result['e2e_delivered']} (each once: {once} / {once_e2e})"
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"release-{stamp}.json").write_text(
        json.dumps({**result, "backend": backend, "target": TARGET, "load_average": load}, indent=2)
    )
    ok = all(row[5] == "PASS" for row in rows if row[5]) and once and once_e2e
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
