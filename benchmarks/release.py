"""Release benchmark: verified orders to a stub LIS over MLLP, through the real outbox.

Run ``python -m benchmarks.release`` (about a minute) or with ``--orders 500`` for a quick
look. It creates a fresh SQLite file (WAL, synchronous FULL; ``--database-url`` for
PostgreSQL), fills it with N synthetic verified orders (two tests, two diagnoses each), and
times, separately:

1. release: ``release_verified`` builds each outbound ORM^O01 with hl7apy and writes the
   outbox rows and the order state in short transactions;
2. delivery: a ``Sender`` claims the outbox, sends each message over one persistent MLLP
   connection to ``labintake.release.stub_lis`` (a subprocess, so it does not share our
   interpreter), waits for each ACK, and records ``delivered``.

The table shows orders/s for each stage and end to end, with PASS/FAIL against the delivery
target (500 orders/s); figures are saved as JSON under ``benchmarks/results/``.
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

from labintake.db import make_engine, migrate, utcnow
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order, OrderDiagnosis, OrderTest
from labintake.release.connection import Endpoint
from labintake.release.delivery import RetryPolicy
from labintake.release.outbox import release_verified
from labintake.release.sender import Sender, SenderOptions, deliver_until_idle

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DELIVERY_TARGET = 500.0


def fill(engine: Engine, count: int) -> None:
    """`count` verified orders with tests and diagnoses (synthetic patients), bulk inserted."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(InboundMessage),
            [
                {
                    "received_at": now,
                    "sending_application": "EHR",
                    "sending_facility": "BENCHCLINIC",
                    "control_id": f"BENCH{i:08d}",
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
        message_ids = [row[0] for row in conn.execute(select(InboundMessage.id))]  # type: ignore[call-overload]
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
        order_ids = [row[0] for row in conn.execute(select(Order.id))]  # type: ignore[call-overload]
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


def start_stub() -> tuple[subprocess.Popen[str], int]:
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


def delivered(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(Order).where(Order.status == "delivered")  # type: ignore[arg-type]
            ).scalar_one()
        )


def run(database_url: str, orders: int, batch: int) -> dict[str, Any]:
    migrate(database_url)
    engine = make_engine(database_url)
    fill(engine, orders)

    started = time.perf_counter()
    released = 0
    while released < orders:
        moved = release_verified(engine, limit=500)
        if not moved:
            break
        released += moved
    release_seconds = time.perf_counter() - started

    stub, port = start_stub()
    try:
        sender = Sender(
            engine,
            Endpoint("127.0.0.1", port, ack_timeout=10.0),
            RetryPolicy(max_attempts=5, base_seconds=0.1, cap_seconds=1.0),
            options=SenderOptions(batch_size=batch, commit_every=min(batch, 100)),
        )
        started = time.perf_counter()
        deliver_until_idle(sender)
        delivery_seconds = time.perf_counter() - started
        sender.close()
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    done = delivered(engine)
    with engine.connect() as conn:
        messages = conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()
    engine.dispose()
    return {
        "orders": orders,
        "released": released,
        "delivered": done,
        "outbox_rows": int(messages),
        "release_seconds": release_seconds,
        "delivery_seconds": delivery_seconds,
        "release_rate": released / release_seconds if release_seconds else 0.0,
        "delivery_rate": done / delivery_seconds if delivery_seconds else 0.0,
        "end_to_end_rate": done / (release_seconds + delivery_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200, help="messages claimed per round")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--workdir", default=None, help="where the SQLite file goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'release-bench.sqlite3'}"
        result = run(url, args.orders, args.batch)
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite (WAL, synchronous FULL)"
    ok = result["delivery_rate"] >= DELIVERY_TARGET and result["delivered"] == args.orders
    rows = [
        (
            "release (hl7apy build + outbox)",
            result["released"],
            result["release_seconds"],
            result["release_rate"],
            "-",
            "",
        ),
        (
            "delivery to stub LIS (MLLP, ACK each)",
            result["delivered"],
            result["delivery_seconds"],
            result["delivery_rate"],
            f">= {DELIVERY_TARGET:.0f}/s",
            "PASS" if ok else "FAIL",
        ),
        (
            "end to end",
            result["delivered"],
            result["release_seconds"] + result["delivery_seconds"],
            result["end_to_end_rate"],
            "-",
            "",
        ),
    ]
    print(
        f"\nrelease benchmark: {args.orders} orders, {backend}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(f"{'stage':<40} {'orders':>7} {'seconds':>8} {'orders/s':>9}  {'target':<9} result")
    for name, n, seconds, rate, target, verdict in rows:
        print(f"{name:<40} {n:>7} {seconds:>8.2f} {rate:>9.0f}  {target:<9} {verdict}")
    print(
        f"outbox rows {result['outbox_rows']}, delivered {result['delivered']} "
        f"(each once: {result['outbox_rows'] == result['delivered']})"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"release-{stamp}.json").write_text(
        json.dumps({**result, "backend": backend, "target": DELIVERY_TARGET}, indent=2)
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
