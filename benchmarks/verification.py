"""Verification engine benchmark: time of `verify()` for typical orders (rules only, no I/O).

    python benchmarks/verification.py [CODE_TABLES_DIR] [--runs N]
    python benchmarks/verification.py --drain 3000 [--database-url URL]

Loads the shipped code tables once, warms up, then times each order shape N times and
prints the median and p99 per call. Target: median for a 3-test order <= 0.2 ms.
`--drain N` also stores N received 3-test orders (500 patients, so there is history) in a
fresh database (a temporary SQLite file unless a URL of an empty, migratable database is
given) and times `verify_pending` draining them: orders per second, database included.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import insert

from labintake.codes.tables import CodeTables, load_code_tables
from labintake.verification import (
    NO_HISTORY,
    DiagnosisFacts,
    OrderFacts,
    PatientHistory,
    PayerFacts,
    PriorTest,
    TestFacts,
    verify,
)

REPO = Path(__file__).resolve().parent.parent
DOS = date(2026, 5, 12)
MEDICARE = PayerFacts("CMS", "Medicare Part B", "MCRB")


def _order(tests: list[tuple[str, str]], dx: list[str]) -> OrderFacts:
    return OrderFacts(
        tests=tuple(
            TestFacts(seq=i, location=f"OBR[{i}]-4", code=code, system=system, text=code)
            for i, (code, system) in enumerate(tests, start=1)
        ),
        diagnoses=tuple(
            DiagnosisFacts(code=c, location=f"DG1[{i}]-3", system="I10")
            for i, c in enumerate(dx, start=1)
        ),
        date_of_service=DOS,
        provider_npi="1049382710",
        provider_name="Dana Whitfield",
        provider_location="ORC[1]-12",
        payer=MEDICARE,
        patient_key="PRAIRIEFM|BENCH",
        interface="prairie-clinic",
    )


HISTORY = PatientHistory(
    tuple(
        PriorTest(DOS - timedelta(days=days), cpt, None, ("E11.9",), f"#{days}")
        for days, cpt in [(40, "82947"), (120, "83036"), (200, "80061"), (300, "80053")]
    )
)
SHAPES = {
    "3 tests, clean (CMP, lipid, HbA1c; 2 dx)": (
        _order([("80053", "CPT"), ("80061", "CPT"), ("83036", "CPT")], ["E11.9", "E78.5"]),
        NO_HISTORY,
    ),
    "3 tests, clean, with 4 prior tests": (
        _order([("80053", "CPT"), ("80061", "CPT"), ("83036", "CPT")], ["E11.9", "E78.5"]),
        HISTORY,
    ),
    "3 tests, 3 holds (header dx, screening PSA, panel overlap)": (
        _order([("80053", "CPT"), ("80048", "CPT"), ("84153", "CPT")], ["E11", "Z12.5"]),
        NO_HISTORY,
    ),
    "1 test, clean (TSH)": (_order([("84443", "CPT")], ["E03.9"]), NO_HISTORY),
}


def drain(tables: CodeTables, count: int, url: str) -> None:
    from labintake.db import make_engine, migrate
    from labintake.models import InboundMessage, Order, OrderDiagnosis, OrderTest
    from labintake.verification.service import verify_pending

    migrate(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(InboundMessage),
            [{"control_id": f"B{i}", "ack": b"", "status": "read"} for i in range(count)],
        )
        conn.execute(
            insert(Order),
            [
                {
                    "message_id": i + 1,
                    "group_index": 1,
                    "status": "received",
                    "sending_facility": "PRAIRIEFM",
                    "placer_order_number": f"P{i}",
                    "patient_mrn": f"M{i % 500}",
                    "payer_company_id": "CMS",
                    "payer_company_name": "Medicare Part B",
                    "provider_npi": "1049382710",
                    "date_of_service": DOS - timedelta(days=i % 200),
                    "details": {"interface": "prairie-clinic"},
                }
                for i in range(count)
            ],
        )
        conn.execute(
            insert(OrderTest),
            [
                {
                    "order_id": i + 1,
                    "seq": seq,
                    "location": f"OBR[{seq}]-4",
                    "sent_code": code,
                    "sent_system": "CPT",
                    "units": 1,
                    "modifiers": "",
                }
                for i in range(count)
                for seq, code in enumerate(("80053", "80061", "83036"), start=1)
            ],
        )
        conn.execute(
            insert(OrderDiagnosis),
            [
                {
                    "order_id": i + 1,
                    "seq": seq,
                    "code": code,
                    "location": f"DG1[{seq}]-3",
                    "source": "sender",
                    "active": True,
                }
                for i in range(count)
                for seq, code in enumerate(("E11.9", "E78.5"), start=1)
            ],
        )
    start = time.perf_counter()
    done = 0
    while batch := verify_pending(engine, tables):
        done += batch
    elapsed = time.perf_counter() - start
    engine.dispose()
    print(f"verify_pending drained {done} orders in {elapsed:.2f} s: {done / elapsed:.0f} orders/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="?", type=Path, default=REPO / "code_tables")
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--drain", type=int, default=0, help="also time verify_pending on N orders")
    parser.add_argument(
        "--database-url", default="", help="an empty database (default: temp SQLite)"
    )
    args = parser.parse_args()
    tables = load_code_tables(args.tables)
    if args.drain:
        if args.database_url:
            drain(tables, args.drain, args.database_url)
        else:
            with tempfile.TemporaryDirectory() as folder:
                drain(tables, args.drain, f"sqlite:///{folder}/bench.sqlite3")
        return
    print(f"{'order':<62} {'median ms':>10} {'p99 ms':>8} findings")
    for name, (facts, history) in SHAPES.items():
        for _ in range(2000):
            result = verify(facts, tables, history)
        timings = []
        gc.disable()
        try:
            for _ in range(args.runs):
                start = time.perf_counter_ns()
                result = verify(facts, tables, history)
                timings.append(time.perf_counter_ns() - start)
        finally:
            gc.enable()
        timings.sort()
        median = statistics.median(timings) / 1e6
        p99 = timings[int(len(timings) * 0.99)] / 1e6
        print(f"{name:<62} {median:>10.4f} {p99:>8.4f} {len(result.findings)}")


if __name__ == "__main__":
    main()
