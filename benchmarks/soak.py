"""Soak: a long run of orders through one `labintake serve` (intake, reading, verification,
release, delivery to a stub LIS), watching throughput and memory per interval.

    python -m benchmarks.soak                      # 200,000 orders, SQLite, unpaced
    python -m benchmarks.soak --orders 20000 --rate 300 --interval 5
    python -m benchmarks.soak --database-url postgresql+psycopg://postgres@127.0.0.1/soak

The load generator sends synthetic ORM^O01 messages over persistent MLLP connections (closed
loop, optionally paced to ``--rate`` messages/s). Every ``--interval`` seconds a line shows,
for that interval, how many messages were acknowledged and how many orders were read,
verified, released and delivered, plus the service's resident memory (process and children).
After the load, the run waits for the pipeline to drain (up to ``--drain-timeout`` seconds),
then prints the final counts and checks that nothing was lost: every AA'd message stored
once, read, verified, and every released order delivered once. Figures are saved as JSON
under ``benchmarks/results/``.

Only loopback addresses are used; the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from benchmarks import servers
from benchmarks.loadgen import LoadResult, LoadSpec, parse_ack, run_load_blocking
from benchmarks.messages import SENDING_APPLICATION, synthetic_orders
from labintake.db import make_engine, migrate
from labintake.release.stub_lis import StubLis

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Totals:
    acked: int = 0
    stored: int = 0
    read: int = 0
    verified: int = 0
    released: int = 0
    delivered: int = 0
    # Orders the rules held for a coder (or that were rejected / could not be read): they
    # rightly stop before release.
    held: int = 0
    rss_mb: float = 0.0


@dataclass
class Interval:
    seconds: float
    acked: int
    read: int
    verified: int
    released: int
    delivered: int
    rss_mb: float
    # Each live process of the service (the listener first, then its children), MB.
    rss_parts_mb: list[float] = field(default_factory=list)


@dataclass
class SoakReport:
    orders: int
    backend: str
    load_average: str
    connections: int
    rate: float
    interval: float
    load_seconds: float = 0.0
    drain_seconds: float = 0.0
    intervals: list[Interval] = field(default_factory=list)
    final: Totals = field(default_factory=Totals)
    ack_codes: dict[str, int] = field(default_factory=dict)
    lis_received: int = 0
    lis_repeats: int = 0
    problems: list[str] = field(default_factory=list)


def count(engine: Engine) -> Totals:
    """Pipeline totals for the soak sender, straight from the tables."""
    app = {"app": SENDING_APPLICATION}
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM inbound_message WHERE sending_application = :app"), app
        ).scalar_one()
        statuses = dict(
            conn.execute(
                text(
                    "SELECT status, count(*) FROM lab_order WHERE sending_application = :app "
                    "GROUP BY status"
                ),
                app,
            ).all()
        )
        verified = conn.execute(
            text(
                "SELECT count(DISTINCT v.order_id) FROM verification v "
                "JOIN lab_order o ON o.id = v.order_id WHERE o.sending_application = :app"
            ),
            app,
        ).scalar_one()
        outbox = dict(
            conn.execute(
                text("SELECT status, count(*) FROM outbox WHERE kind = 'release' GROUP BY status")
            ).all()
        )
    return Totals(
        stored=int(stored),
        read=int(sum(statuses.values())),
        verified=int(verified),
        released=int(sum(outbox.values())),
        delivered=int(outbox.get("delivered", 0)),
        held=int(sum(statuses.get(s, 0) for s in ("held", "awaiting_office", "rejected", "error"))),
    )


def _load_average() -> str:
    """The machine's 1/5/15-minute load averages when the run starts (other work shows)."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


class Monitor:
    """Samples the totals and the service's memory every `interval` seconds, printing a line."""

    def __init__(
        self, engine: Engine, server: servers.ServerProcess, interval: float, acked: list[int]
    ) -> None:
        self.engine = engine
        self.server = server
        self.interval = interval
        self.acked = acked
        self.stop = threading.Event()
        self.intervals: list[Interval] = []
        self.started = time.monotonic()
        self._last = Totals()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        print(
            f"{'t (s)':>7} {'acked/s':>8} {'read/s':>7} {'verif/s':>8} {'rel/s':>6} "
            f"{'deliv/s':>8} {'RSS MB':>7}   backlog (stored-verified, verified-held-delivered)"
            "   (RSS per process: listener + its children)",
            flush=True,
        )
        self._thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()

    def sample(self) -> Totals:
        now = count(self.engine)
        now.acked = self.acked[0]
        parts = [servers.rss_bytes_of(pid) / 2**20 for pid in servers.process_tree(self.server.pid)]
        now.rss_mb = sum(parts)
        last, seconds = self._last, self.interval
        row = Interval(
            seconds=round(time.monotonic() - self.started, 1),
            acked=now.acked - last.acked,
            read=now.read - last.read,
            verified=now.verified - last.verified,
            released=now.released - last.released,
            delivered=now.delivered - last.delivered,
            rss_mb=round(now.rss_mb, 1),
            rss_parts_mb=[round(part, 1) for part in parts],
        )
        self.intervals.append(row)
        self._last = now
        print(
            f"{row.seconds:7.0f} {row.acked / seconds:8.0f} {row.read / seconds:7.0f} "
            f"{row.verified / seconds:8.0f} {row.released / seconds:6.0f} "
            f"{row.delivered / seconds:8.0f} {row.rss_mb:7.1f}   "
            f"{now.stored - now.verified}, {now.verified - now.held - now.delivered}   "
            f"({' + '.join(f'{part:.0f}' for part in parts)})",
            flush=True,
        )
        return now

    def close(self) -> None:
        self.stop.set()
        self._thread.join(30)


def run(args: argparse.Namespace) -> SoakReport:
    workdir = Path(tempfile.mkdtemp(prefix="labintake-soak-"))
    url = args.database_url or f"sqlite:///{workdir / 'soak.sqlite3'}"
    migrate(url)
    engine = make_engine(url)
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite (WAL, synchronous FULL)"
    report = SoakReport(
        args.orders, backend, _load_average(), args.connections, args.rate, args.interval
    )
    lis = StubLis(port=0).start()
    server = servers.labintake(
        url,
        workdir / "serve",
        extra_env={"LABINTAKE_LIS_HOST": "127.0.0.1", "LABINTAKE_LIS_PORT": str(lis.port)},
    ).start()
    assert server.port is not None
    acked = [0]

    def on_ack(_control_id: str, _code: str, total: int) -> None:
        acked[0] = total

    monitor = Monitor(engine, server, args.interval, acked)
    print(
        f"soak: {args.orders} orders, {args.connections} connections, "
        f"{'unpaced' if args.rate <= 0 else f'{args.rate:g} msg/s'}, {backend}; "
        f"service log {server.log_path}",
        flush=True,
    )
    monitor.start()
    load: LoadResult | None = None
    try:
        started = time.monotonic()
        load = run_load_blocking(
            LoadSpec(
                port=server.port,
                connections=args.connections,
                max_messages=args.orders,
                keep_acks=True,
                stop_on_error=False,
                ack_timeout_seconds=60.0,
                rate=max(args.rate, 0.0),
            ),
            synthetic_orders("SOAK", args.orders),
            on_ack=on_ack,
        )
        report.load_seconds = round(time.monotonic() - started, 1)
        print(f"-- load done in {report.load_seconds} s; draining", flush=True)
        drain_started = time.monotonic()
        deadline = drain_started + args.drain_timeout
        while time.monotonic() < deadline:
            totals = count(engine)
            if totals.verified >= totals.stored and totals.delivered + totals.held >= totals.stored:
                break
            time.sleep(min(args.interval, 5.0))
        report.drain_seconds = round(time.monotonic() - drain_started, 1)
    finally:
        monitor.close()
        final = monitor.sample()
        report.intervals = monitor.intervals
        server.stop()
        lis.stop()
    # Count again after the orderly stop: deliveries in flight finish during shutdown.
    stopped = count(engine)
    stopped.acked, stopped.rss_mb = final.acked, final.rss_mb
    final = stopped
    lis_counts = lis.counts()
    report.final = final
    report.lis_received = len(lis_counts)
    report.lis_repeats = sum(n - 1 for n in lis_counts.values())
    assert load is not None
    codes = {c: parse_ack(a)[0] for c, a in load.acks.items()}
    report.ack_codes = {code: list(codes.values()).count(code) for code in set(codes.values())}
    accepted = sum(1 for code in codes.values() if code == "AA")
    if accepted != final.stored:
        report.problems.append(f"{accepted} AA but {final.stored} stored")
    if final.read < final.stored:
        report.problems.append(f"{final.stored - final.read} stored messages not read")
    if final.verified < final.read:
        report.problems.append(f"{final.read - final.verified} orders not verified")
    if final.delivered < final.released or final.released + final.held < final.verified:
        report.problems.append(
            f"release backlog at the end: {final.verified - final.held - final.released} "
            f"verified not released, {final.released - final.delivered} released not delivered"
        )
    if report.lis_received != final.delivered:
        report.problems.append(f"LIS took {report.lis_received}, outbox says {final.delivered}")
    engine.dispose()
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def summarize(report: SoakReport) -> None:
    final = report.final
    rss = [i.rss_mb for i in report.intervals if i.rss_mb]
    busy = [i for i in report.intervals if i.acked]
    rates = [i.acked / report.interval for i in busy[:-1]]  # the last interval is partial
    print("\nfinal counts (after the service stopped)")
    print(
        f"  sent/acked {sum(report.ack_codes.values())} {report.ack_codes}; stored {final.stored}; "
        f"read {final.read}; verified {final.verified}; released {final.released}; "
        f"delivered {final.delivered}; held for a coder {final.held}; "
        f"LIS took {report.lis_received} "
        f"({report.lis_repeats} repeats)"
    )
    print(
        f"  load {report.load_seconds} s, drain {report.drain_seconds} s; machine load "
        f"average at the start {report.load_average}"
    )
    if rss:
        print(f"  RSS MB: first {rss[0]}, max {max(rss)}, last {rss[-1]}")
        by_process = [i.rss_parts_mb for i in report.intervals if i.rss_parts_mb]
        width = max(len(parts) for parts in by_process)
        for index in range(width):
            series = [parts[index] for parts in by_process if len(parts) > index]
            name = "listener" if index == 0 else f"child {index}"
            half = series[len(series) // 2 :]
            print(
                f"    {name}: first {series[0]}, max {max(series)}, last {series[-1]}; "
                f"second half of the run {min(half)}-{max(half)}"
            )
    if rates:
        print(f"  acked/s per interval while loading: min {min(rates):.0f}, max {max(rates):.0f}")
    print("  nothing lost" if not report.problems else "  PROBLEMS: " + "; ".join(report.problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s (0: unpaced)")
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (database file, service log)"
    )
    args = parser.parse_args()
    report = run(args)
    summarize(report)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"soak-{stamp}.json"
    path.write_text(json.dumps(asdict(report), indent=1))
    print(f"  figures saved to {path.relative_to(RESULTS_DIR.parent.parent)}")


if __name__ == "__main__":
    main()
