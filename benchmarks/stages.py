"""CPU per order of each pipeline stage, in-process: reading, verification, release, delivery.

    .venv/bin/python -m benchmarks.stages                     # 2000 orders, SQLite
    .venv/bin/python -m benchmarks.stages --count 5000 --profile release [--sort tottime]
    .venv/bin/python -m benchmarks.stages --batch 50      # the batch size while messages arrive
    .venv/bin/python -m benchmarks.stages --database-url postgresql+psycopg://...

Stores `--count` synthetic nine-segment ORM^O01 messages as intake leaves them (status
`received`) in a fresh SQLite file (or the PostgreSQL database given: its tables are emptied
first, so use a scratch database), then runs, one after the other in this process, reading
(`read_until_empty`), verification (the `pending_verifier` loop), release (the
`release_verified` loop) and delivery (a `Sender` draining the outbox over MLLP to
`labintake.release.stub_lis` started as a subprocess, so the LIS's CPU is not ours), and
prints for each stage its wall time, CPU time
(`time.process_time`, this process only: the database server's CPU is not counted on
PostgreSQL) and CPU milliseconds per order. `--profile STAGE` prints a cProfile top 25 for
that stage (which inflates its times).

In the same run it measures python-hl7's in-memory parse and ACK (`hl7.parse` plus
`create_ack`, the work of the listener peer in benchmarks/peers) on the same messages and
prints each stage's CPU per order as a multiple of it, so runs on a loaded machine compare.
Before the stages it settles the garbage collector as the worker processes do
(`labintake.heap.settle`); `--no-settle` leaves it as Python starts it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hl7
from sqlalchemy import text
from sqlalchemy.engine import Engine

from benchmarks.databases import store_received
from benchmarks.release import start_stub
from labintake import heap
from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.interfaces import InterfaceRegistry, load_interfaces
from labintake.reading.worker import read_until_empty
from labintake.release.bulk import release_verified
from labintake.release.connection import Endpoint
from labintake.release.delivery import RetryPolicy
from labintake.release.sender import Sender, SenderOptions, deliver_until_idle
from labintake.verification.service import pending_verifier

REPO = Path(__file__).resolve().parent.parent
STAGES = ("reading", "verification", "release", "delivery")
TARGET_MS = 0.5  # CPU per order, whole pipeline


@dataclass(frozen=True, slots=True)
class StageTime:
    name: str
    done: int
    wall: float
    cpu: float


def bench_settings(url: str) -> Settings:
    """Development settings on `url` with this checkout's interfaces and code tables."""
    return Settings(
        development=True,
        database_url=url,
        interfaces_dir=REPO / "interfaces",
        code_tables_dir=REPO / "code_tables",
    )


def service_sender(engine: Engine, port: int) -> Sender:
    """The service's sender settings (SenderOptions defaults), one persistent connection to
    the stub LIS on `port`."""
    return Sender(
        engine,
        Endpoint("127.0.0.1", port, ack_timeout=10.0),
        RetryPolicy(max_attempts=5, base_seconds=0.1, cap_seconds=1.0),
        options=SenderOptions(),
    )


def peer_cpu_per_message(raws: list[bytes]) -> float:
    """python-hl7's parse plus ACK, in memory: CPU seconds per message."""
    texts = [raw.decode("ascii") for raw in raws]
    started = time.process_time()
    for message in texts:
        str(hl7.parse(message).create_ack("AA"))
    return (time.process_time() - started) / len(texts)


def until_empty(step: Callable[[], int]) -> int:
    total = 0
    while done := step():
        total += done
    return total


def timed(name: str, run: Callable[[], int], profile: bool, sort: str = "cumulative") -> StageTime:
    profiler = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    done = run()
    if profiler is not None:
        profiler.disable()
    stage = StageTime(name, done, time.perf_counter() - wall, time.process_time() - cpu)
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(25)
        print(f"--- cProfile: {name} (top 25, {sort}) ---\n{out.getvalue()}")
    return stage


def run_stages(
    url: str,
    count: int,
    profile: str,
    settle: bool = True,
    batch: int = 500,
    sort: str = "cumulative",
) -> tuple[list[StageTime], float, int]:
    migrate(url)
    engine = make_engine(url)
    try:
        raws = store_received(engine, count, "STAGE")
        peer = peer_cpu_per_message(raws)
        settings = bench_settings(url)
        registry = load_interfaces(settings.interfaces_dir)
        verify = pending_verifier(settings, engine, registry)
        verify(1)  # loads the code tables outside the measured time
        stub, port = start_stub()
        sender = service_sender(engine, port)
        if settle:
            heap.settle()  # as the worker processes do once started
        try:
            stages = _run(engine, registry, verify, sender, profile, batch, sort)
        finally:
            sender.close()
            stub.terminate()
            stub.wait(timeout=10)
        with engine.connect() as conn:
            orders = int(conn.execute(text("SELECT count(*) FROM lab_order")).scalar_one())
            delivered = int(
                conn.execute(
                    text("SELECT count(*) FROM lab_order WHERE status = 'delivered'")
                ).scalar_one()
            )
        if delivered != stages[2].done:
            raise RuntimeError(f"{stages[2].done} orders released but {delivered} delivered")
    finally:
        engine.dispose()
    return stages, peer, orders


def _run(
    engine: Engine,
    registry: InterfaceRegistry,
    verify: Callable[[int], int],
    sender: Sender,
    profile: str,
    batch: int,
    sort: str,
) -> list[StageTime]:
    """The four stages, one after the other, in batches of `batch`."""
    runs: list[tuple[str, Callable[[], int]]] = [
        ("reading", lambda: read_until_empty(engine, registry, limit=batch)),
        ("verification", lambda: until_empty(lambda: verify(batch))),
        ("release", lambda: until_empty(lambda: release_verified(engine, limit=batch))),
        ("delivery", lambda: deliver_until_idle(sender)),
    ]
    return [timed(name, run, profile == name, sort) for name, run in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--profile", choices=STAGES, default="")
    parser.add_argument(
        "--sort", choices=("cumulative", "tottime"), default="cumulative", help="--profile order"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=500,
        help="orders per batch (500: a backlog draining; 50: the service while messages arrive)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--no-settle",
        action="store_true",
        help="leave the garbage collector as Python starts it (no labintake.heap.settle)",
    )
    args = parser.parse_args(argv)

    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'stages.sqlite3'}"
        stages, peer, orders = run_stages(
            url, args.count, args.profile, not args.no_settle, args.batch, args.sort
        )

    per = max(orders, 1)
    peer_ms = peer * 1000
    print(
        f"backend    {url.split(':', 1)[0]}   orders {orders}   batch {args.batch}   "
        f"load average {_load()}"
    )
    print(f"peer       python-hl7 parse+ACK {peer_ms:.3f} ms CPU per message")
    print(f"{'stage':<14}{'done':>7}{'wall s':>9}{'CPU s':>9}{'CPU ms/order':>14}{'x peer':>9}")
    total = 0.0
    for s in stages:
        ms = s.cpu * 1000 / per
        total += ms
        print(f"{s.name:<14}{s.done:>7}{s.wall:>9.2f}{s.cpu:>9.2f}{ms:>14.3f}{ms / peer_ms:>9.1f}")
    print(f"{'total':<14}{'':>7}{'':>9}{'':>9}{total:>14.3f}{total / peer_ms:>9.1f}")
    print(f"target     <= {TARGET_MS} ms CPU per order for the whole pipeline")
    return 0


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


if __name__ == "__main__":
    sys.exit(main())
