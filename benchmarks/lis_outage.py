"""ACKs while the LIS is down and the outbox holds a large backlog (SQLite).

    python -m benchmarks.lis_outage                       # 100,000 pending, 200 orders/s, 10 s
    python -m benchmarks.lis_outage --backlog 50000 --rate 300 --lock-holds

An outage of the LIS leaves every released order's message pending in the outbox: at 500
orders a second, 100,000 of them after a little over three minutes. Meanwhile the sender
keeps looking for due messages and release keeps adding to the backlog; on SQLite every
write transaction of theirs holds the one write lock that intake's ACKs wait for, so any of
them whose cost grows with the backlog shows in the ACK times.

The run builds the backlog in a fresh SQLite file (``--seed`` orders read, verified and
released by labintake's own stages in this process, then their outbox rows copied under
new sequence keys and control ids until ``--backlog`` are pending, a fraction of them
already retried once and waiting for their next attempt), starts ``labintake serve`` on it
with the LIS at a loopback port nobody listens on, and sends ``--rate`` synthetic orders a
second for ``--seconds`` over persistent connections (the pipeline benchmark's open-loop
load), after two seconds of the same load to warm the service up. It prints the ACK latency
(p50, p99, max) and, with ``--lock-holds``, each write transaction's hold of the lock. Then,
with ``--recovery SECONDS``, the LIS comes back: the service stopped, a sender in this process
(the service's sender settings) delivers the backlog to the stub LIS for that long, and the
run prints the messages delivered per second. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from benchmarks import servers
from benchmarks.databases import store_received
from benchmarks.loadgen import percentile
from benchmarks.messages import synthetic_orders
from benchmarks.pipeline import Instances, lock_holds_env, open_loop, print_lock_holds
from benchmarks.release import start_stub
from benchmarks.stages import bench_settings, service_sender
from labintake.db import make_engine, migrate
from labintake.interfaces import load_interfaces
from labintake.reading.worker import read_until_empty
from labintake.release.bulk import release_verified
from labintake.verification.service import pending_verifier

WARM_UP_PAUSE_SECONDS = 3.0

# Copies of the seed's outbox rows, each a message of an order of its own (sequence key and
# control id made unique, in the row and in the message's MSH-10, which the LIS's ACK must
# name); one in ten has been tried once and waits for its next attempt.
_COPY = """
INSERT INTO outbox (order_id, kind, destination, sequence_key, control_id, message_type,
  message, status, attempts, ack_code, created_by, created_at, updated_at, next_attempt_at)
SELECT o.order_id, o.kind, o.destination, o.sequence_key || '-' || c.n,
  o.control_id || '-' || c.n, o.message_type,
  CAST(replace(CAST(o.message AS TEXT), o.control_id, o.control_id || '-' || c.n) AS BLOB),
  'pending',
  CASE WHEN c.n % 10 = 0 THEN 1 ELSE 0 END, '', 'system', o.created_at, o.updated_at,
  CASE WHEN c.n % 10 = 0 THEN datetime('now', '+1 hour') ELSE o.next_attempt_at END
FROM outbox o, (WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < :copies)
  SELECT n FROM k) c
WHERE o.status = 'pending' AND o.sequence_key NOT LIKE '%-%'
"""


def build_backlog(url: str, seed: int, backlog: int) -> int:
    """Seed orders through the stages, then outbox copies up to `backlog` pending."""
    migrate(url)
    engine = make_engine(url)
    try:
        store_received(engine, seed, "SEED")
        settings = bench_settings(url)
        registry = load_interfaces(settings.interfaces_dir)
        read_until_empty(engine, registry)
        verify = pending_verifier(settings, engine, registry)
        while verify(500):
            pass
        while release_verified(engine):
            pass
        with engine.begin() as conn:
            released = conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()
            copies = max(0, (backlog - released) // max(released, 1))
            if copies:
                conn.execute(text(_COPY), {"copies": copies})
            return int(
                conn.execute(
                    text("SELECT count(*) FROM outbox WHERE status = 'pending'")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def recovery(url: str, seconds: float) -> tuple[int, float]:
    """The LIS back: deliver for `seconds` (rounds of the service's sender, one persistent
    connection to the stub LIS); the messages delivered and the seconds taken."""
    engine = make_engine(url)
    stub, port = start_stub()
    sender = service_sender(engine, port)
    delivered = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            delivered += sender.deliver_due()
    finally:
        elapsed = time.perf_counter() - started
        sender.close()
        stub.terminate()
        stub.wait(10)
        engine.dispose()
    return delivered, elapsed


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=100_000, help="pending outbox messages")
    parser.add_argument("--seed", type=int, default=2_000, help="orders built by the stages")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--lock-holds", action="store_true")
    parser.add_argument("--recovery", type=float, default=0.0, help="seconds of delivery after")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="labintake-outage-"))
    url = f"sqlite:///{workdir / 'outage.db'}"
    try:
        pending = build_backlog(url, args.seed, args.backlog)
        extra = {"LABINTAKE_LIS_HOST": "127.0.0.1", "LABINTAKE_LIS_PORT": str(closed_port())}
        if args.lock_holds:
            extra.update(lock_holds_env(workdir / "lock-holds"))
        service = Instances([servers.labintake(url, workdir / "serve", extra_env=extra)])
        service.start()
        try:
            # Warm up: the reading sandbox starts, each stage loads what it keeps (code
            # tables, the message builder); not what this run is about.
            open_loop(service.ports[0], args.rate, 2.0, args.connections, synthetic_orders("WARM"))
            time.sleep(WARM_UP_PAUSE_SECONDS)
            load = open_loop(
                service.ports[0],
                args.rate,
                args.seconds,
                args.connections,
                iter(synthetic_orders("OUTAGE", int(args.rate * args.seconds) + 1)),
            )
        finally:
            service.stop()
        ms = sorted(x * 1000 for x in load.latencies)
        print(
            f"outage: {pending} pending in the outbox, {args.rate:.0f} orders/s for "
            f"{args.seconds:.0f} s, {load.errors} errors; ACK ms p50 {percentile(ms, 0.5):.2f} "
            f"p99 {percentile(ms, 0.99):.2f} max {ms[-1]:.2f}",
            flush=True,
        )
        if args.lock_holds:
            print_lock_holds(workdir / "lock-holds")
        if args.recovery:
            delivered, seconds = recovery(url, args.recovery)
            print(
                f"recovery: {delivered} delivered in {seconds:.1f} s, "
                f"{delivered / seconds:.0f} messages/s",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
