"""The whole pipeline under an open-loop load at rising rates: AA to delivered, per rate.

    python -m benchmarks.pipeline                               # SQLite, 250 500 1000 1500/s
    python -m benchmarks.pipeline --database postgresql --rates 500 1000 --seconds 10

`labintake serve` runs in a subprocess (listener, web app, worker process) on a fresh SQLite
file (WAL, synchronous FULL) or a fresh PostgreSQL database, delivering to the stub LIS
(``labintake.release.stub_lis``, a subprocess answering AA). For each rate:

1. open-loop load: synthetic ORM^O01 orders (``messages.py``) are due at a fixed pace, whatever
   the answers do, spread over ``--connections`` persistent connections; the ACK latency runs
   from when a message was due to when its ACK arrived (time spent waiting for a free
   connection counts, so a server falling behind shows);
2. the backlog (ACKed AA, not yet delivered nor held for a coder) is sampled every 0.5 s; it is
   "flat" when it grows by less than a tenth of the rate per second over the second half of
   the load;
3. after the load the run waits until every order is delivered (or held), then reads each
   order's AA-to-delivered time: from its ACK at the load generator to the moment the outbox
   recorded the LIS's AA (``outbox.delivered_at``);
4. CPU per order: user + system time of the service's processes (``/proc``) from the start of
   the load to the end of the drain, over the orders ACKed AA at that rate (each rate's orders
   have patients of their own, so none is held as a repeat of an earlier rate's), also split
   by process (listener, web, worker, reading sandboxes); before the first rate the service
   is warmed up (:func:`warm_up`: its start-up is not a cost per order), unless ``--cold``
   asks for a burst right after the start;
5. the peer: python-hl7's in-memory parse + ACK server (``peers/python_hl7_server.py``) takes
   the same open-loop load with the service paused (SIGSTOP), for its ACK latency and CPU per
   message. Absolute figures move with whatever else runs on the machine; the ratios to the
   peer measured in the same run move less.

The table is printed and the figures saved as JSON under ``benchmarks/results/``. Only
loopback addresses are used; the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from benchmarks import servers
from benchmarks.databases import fresh_postgresql_database
from benchmarks.loadgen import FRAME_END, START_BLOCK, parse_ack, percentile
from benchmarks.messages import SyntheticMessage, synthetic_orders
from benchmarks.release import start_stub
from benchmarks.soak import count
from labintake.db import make_engine, migrate

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SAMPLE_SECONDS = 0.5
FLAT_SHARE = 0.1  # backlog growth per second, as a share of the rate, still called flat


@dataclass(slots=True)
class StepLoad:
    """What the load generator saw during one rate's load."""

    rate: float
    seconds: float
    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # due -> ACK, seconds
    acked_at: dict[str, float] = field(default_factory=dict)  # control id -> time.time()
    codes: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    elapsed: float = 0.0

    def ms(self, quantile: float) -> float:
        return round(percentile(sorted(self.latencies), quantile) * 1000.0, 2)


async def _open_loop(
    load: StepLoad,
    port: int | Sequence[int],
    connections: int,
    messages: Iterator[SyntheticMessage],
) -> StepLoad:
    """Messages due every 1/rate s for `load.seconds`, on `connections` persistent
    connections (spread over the ports in turn, when given several); results go into `load`
    as they come (others may read it meanwhile)."""
    ports = [port] if isinstance(port, int) else list(port)
    rate, seconds = load.rate, load.seconds
    queue: asyncio.Queue[tuple[SyntheticMessage, float] | None] = asyncio.Queue()

    async def produce() -> None:
        started = time.perf_counter()
        total = int(rate * seconds)
        while load.sent < total:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            while load.sent < due:
                queue.put_nowait((next(messages), started + load.sent / rate))
                load.sent += 1
            await asyncio.sleep(0.001)
        for _ in range(connections):
            queue.put_nowait(None)

    async def connection(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=4 * 2**20)
        try:
            while (item := await queue.get()) is not None:
                message, due = item
                try:
                    writer.write(START_BLOCK + message.raw + FRAME_END)
                    async with asyncio.timeout(30.0):
                        reply = await reader.readuntil(FRAME_END)
                except (OSError, TimeoutError, asyncio.IncompleteReadError):
                    load.errors += 1
                    continue
                load.latencies.append(time.perf_counter() - due)
                code, _ = parse_ack(reply)
                load.codes[code] = load.codes.get(code, 0) + 1
                if code == "AA":
                    load.acked_at[message.control_id] = time.time()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(
        produce(), *(connection(ports[i % len(ports)]) for i in range(connections))
    )
    load.elapsed = time.perf_counter() - started
    return load


def open_loop(
    port: int, rate: float, seconds: float, connections: int, messages: Iterator[SyntheticMessage]
) -> StepLoad:
    return asyncio.run(_open_loop(StepLoad(rate, seconds), port, connections, messages))


def settled(engine: Engine) -> int:
    """Orders at the end of the pipeline: delivered, or held for a coder."""
    totals = count(engine)
    return totals.delivered + totals.held


class BacklogSampler:
    """Every SAMPLE_SECONDS: (seconds, ACKed AA so far - settled), in a thread."""

    def __init__(self, engine: Engine, acked_before: int, load: StepLoad) -> None:
        self.engine = engine
        self.acked_before = acked_before
        self.load = load
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BacklogSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            acked = self.acked_before + len(self.load.acked_at)
            self.samples.append((time.monotonic() - self._started, acked - settled(self.engine)))

    def growth_per_second(self, seconds: float) -> float:
        """Backlog growth per second over the second half of `seconds` of load."""
        half = [(t, b) for t, b in self.samples if seconds / 2 <= t <= seconds]
        if len(half) < 2:
            return 0.0
        (t0, b0), (t1, b1) = half[0], half[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def _delivery_times(engine: Engine, prefix: str, acked_at: dict[str, float]) -> list[float]:
    """AA (at the load generator) to delivered (outbox) of the orders of one step, seconds."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT m.control_id, ob.delivered_at FROM outbox ob "
                "JOIN lab_order o ON o.id = ob.order_id "
                "JOIN inbound_message m ON m.id = o.message_id "
                "WHERE ob.status = 'delivered' AND m.control_id LIKE :prefix"
            ),
            {"prefix": prefix + "%"},
        ).all()
    times = []
    for control_id, delivered_at in rows:
        if control_id in acked_at and delivered_at is not None:
            if isinstance(delivered_at, str):  # SQLite, read without the model: naive UTC text
                delivered_at = datetime.fromisoformat(delivered_at)
            if delivered_at.tzinfo is None:
                delivered_at = delivered_at.replace(tzinfo=UTC)
            times.append(delivered_at.timestamp() - acked_at[control_id])
    return sorted(times)


@dataclass
class RateResult:
    rate: float
    acked_per_s: float
    ack_p50_ms: float
    ack_p99_ms: float
    ack_max_ms: float
    backlog_growth_per_s: float
    backlog_flat: bool
    backlog_peak: int
    delivered: int
    drain_s: float
    delivered_p50_s: float
    delivered_p99_s: float
    cpu_ms_per_order: float
    cpu_ms_per_order_by_role: dict[str, float]
    peer_ack_p50_ms: float
    peer_ack_p99_ms: float
    peer_cpu_ms_per_msg: float
    ack_codes: dict[str, int]
    errors: int
    backlog: list[tuple[float, int]]


class Instances:
    """Several `labintake serve` on one database, measured as one service: the load is spread
    over their MLLP ports, their CPU added up."""

    def __init__(self, members: Sequence[servers.ServerProcess]) -> None:
        self.members = list(members)

    @property
    def ports(self) -> list[int]:
        ports = [m.port for m in self.members]
        assert all(p is not None for p in ports)
        return [p for p in ports if p is not None]

    def start(self) -> None:
        self._each("start")

    def stop(self) -> None:
        self._each("stop")

    def pause(self) -> None:
        self._each("pause")

    def resume(self) -> None:
        self._each("resume")

    def _each(self, action: str) -> None:
        for member in self.members:
            getattr(member, action)()

    def cpu_seconds(self) -> float:
        return sum(m.cpu_seconds() for m in self.members)

    def cpu_by_role(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for member in self.members:
            for role, seconds in member.cpu_by_role().items():
                total[role] = total.get(role, 0.0) + seconds
        return total


def run_rate(
    args: argparse.Namespace,
    engine: Engine,
    service: Instances,
    peer: servers.ServerProcess,
    rate: float,
    acked_before: int,
) -> RateResult:
    prefix = f"PIPE{int(rate)}X"
    assert peer.port is not None
    cpu_before = service.cpu_seconds()
    roles_before = service.cpu_by_role()
    load = StepLoad(rate, args.seconds)
    # A seed of its own per rate: the same patients and tests again would be held as repeats.
    seed = args.seed + int(rate)
    messages = synthetic_orders(prefix, seed=seed)
    with BacklogSampler(engine, acked_before, load) as sampler:
        asyncio.run(_open_loop(load, service.ports, args.connections, messages))
        load_done = time.monotonic()
        deadline = load_done + args.drain_timeout
        target = acked_before + len(load.acked_at)
        while settled(engine) < target and time.monotonic() < deadline:
            time.sleep(0.1)
        drain = time.monotonic() - load_done
    cpu = service.cpu_seconds() - cpu_before
    roles_after = service.cpu_by_role()
    acked = max(1, len(load.acked_at))
    cpu_by_role = {
        role: round((seconds - roles_before.get(role, 0.0)) * 1000.0 / acked, 3)
        for role, seconds in sorted(roles_after.items())
    }
    times = _delivery_times(engine, prefix, load.acked_at)
    service.pause()
    try:
        peer.resume()
        peer_cpu_before = peer.cpu_seconds()
        peer_load = open_loop(
            peer.port,
            rate,
            args.seconds,
            args.connections,
            synthetic_orders(f"PEER{int(rate)}X", seed=seed),
        )
        peer_cpu = peer.cpu_seconds() - peer_cpu_before
        peer.pause()
    finally:
        service.resume()
    growth = sampler.growth_per_second(args.seconds)
    return RateResult(
        rate=rate,
        acked_per_s=round(len(load.latencies) / load.elapsed, 1) if load.elapsed else 0.0,
        ack_p50_ms=load.ms(0.50),
        ack_p99_ms=load.ms(0.99),
        ack_max_ms=load.ms(1.0),
        backlog_growth_per_s=round(growth, 1),
        backlog_flat=growth < FLAT_SHARE * rate,
        backlog_peak=max((b for _, b in sampler.samples), default=0),
        delivered=len(times),
        drain_s=round(drain, 2),
        delivered_p50_s=round(percentile(times, 0.50), 3),
        delivered_p99_s=round(percentile(times, 0.99), 3),
        cpu_ms_per_order=round(cpu * 1000.0 / max(1, len(load.acked_at)), 3),
        cpu_ms_per_order_by_role=cpu_by_role,
        peer_ack_p50_ms=peer_load.ms(0.50),
        peer_ack_p99_ms=peer_load.ms(0.99),
        peer_cpu_ms_per_msg=round(peer_cpu * 1000.0 / max(1, len(peer_load.latencies)), 3),
        ack_codes=load.codes,
        errors=load.errors,
        backlog=[(round(t, 1), b) for t, b in sampler.samples],
    )


WARM_UP_ORDERS = 50
SETTLED_CPU_SHARE = 0.05  # of one core: the service is idle again
SETTLE_TIMEOUT_SECONDS = 120.0


def wait_until_idle(service: Instances) -> float:
    """Wait (up to SETTLE_TIMEOUT_SECONDS) until the service uses under SETTLED_CPU_SHARE of a
    core over a second; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT_SECONDS:
        before = service.cpu_seconds()
        time.sleep(1.0)
        if service.cpu_seconds() - before < SETTLED_CPU_SHARE:
            break
    return time.monotonic() - started


def warm_up(args: argparse.Namespace, engine: Engine, service: Instances) -> int:
    """What `labintake serve` does once, before the first rate: its reading sandboxes start
    (a spawned interpreter importing the reader) after the listener already answers, and the
    first order through each stage loads what that stage keeps (code tables, the outbound
    message builder). Counted in the first rate's CPU it weighed as if each of its orders
    cost a share of it. So: wait until the service is idle, send WARM_UP_ORDERS through the
    whole pipeline, wait until they settle and the service is idle again. Returns the AA
    count, for the backlog of the rates after."""
    wait_until_idle(service)
    load = StepLoad(WARM_UP_ORDERS, 1.0)
    messages = synthetic_orders("WARMX", seed=args.seed)
    asyncio.run(_open_loop(load, service.ports, len(service.members), messages))
    deadline = time.monotonic() + args.drain_timeout
    while settled(engine) < len(load.acked_at) and time.monotonic() < deadline:
        time.sleep(0.1)
    wait_until_idle(service)
    return load.codes.get("AA", 0)


@dataclass
class PipelineReport:
    database: str
    machine: str
    load_average: str
    connections: int
    seconds: float
    instances: int = 1
    rates: list[RateResult] = field(default_factory=list)


def run(args: argparse.Namespace, url: str, workdir: Path) -> PipelineReport:
    engine = make_engine(url)
    stub, lis_port = start_stub()
    extra_env = {"LABINTAKE_LIS_HOST": "127.0.0.1", "LABINTAKE_LIS_PORT": str(lis_port)}
    if args.lock_holds:
        extra_env.update(lock_holds_env(workdir / "lock-holds"))
    service = Instances(
        [
            servers.labintake(url, workdir / f"serve-{n}", extra_env=extra_env)
            for n in range(1, args.instances + 1)
        ]
    )
    peer = servers.peer("python_hl7_server", workdir / "python-hl7.log")
    report = PipelineReport(
        database="PostgreSQL" if url.startswith("postgresql") else "SQLite (WAL, synchronous FULL)",
        machine=f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        load_average=" ".join(f"{x:.1f}" for x in os.getloadavg()),
        connections=args.connections,
        seconds=args.seconds,
        instances=args.instances,
    )
    try:
        service.start()
        peer.start()
        peer.pause()
        acked = 0 if args.cold else warm_up(args, engine, service)
        for rate in args.rates:
            result = run_rate(args, engine, service, peer, rate, acked)
            acked += result.ack_codes.get("AA", 0)
            report.rates.append(result)
            print_row(result)
    finally:
        service.stop()
        peer.resume()
        peer.stop()
        stub.terminate()
        stub.wait(10)
        engine.dispose()
    return report


LOCK_HOLDS_HOOK = Path(__file__).parent / "lock_holds"


def lock_holds_env(folder: Path) -> dict[str, str]:
    """Environment that makes every process of the service record its write transactions'
    lock holds into `folder` (``lock_holds/sitecustomize.py``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(LOCK_HOLDS_HOOK), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "LABINTAKE_BENCH_LOCK_HOLDS": str(folder)}


def print_lock_holds(folder: Path) -> None:
    """Per thread and first write statement: how many write transactions, how long each held
    the write lock (end of the first write to commit, fsync excluded), and their sum."""
    holds: list[tuple[float, str, str]] = []
    for path in sorted(folder.glob("holds-*.json")):
        holds += [tuple(h) for h in json.loads(path.read_text())]  # type: ignore[misc]
    groups: dict[tuple[str, str], list[float]] = {}
    for seconds, what, thread in holds:
        groups.setdefault((thread, what), []).append(seconds * 1000)
    print("write lock held (end of the first write to commit, fsync excluded), ms:")
    print(
        f"{'thread':<18} {'first write':<44} {'n':>6} {'p50':>6} {'p90':>6} {'p99':>6} "
        f"{'max':>6} {'sum s':>6}"
    )
    for (thread, what), ms in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        if sum(ms) < 10:
            continue
        ms.sort()
        print(
            f"{thread[:18]:<18} {what[:44]:<44} {len(ms):6d} {percentile(ms, 0.5):6.1f} "
            f"{percentile(ms, 0.9):6.1f} {percentile(ms, 0.99):6.1f} {ms[-1]:6.1f} "
            f"{sum(ms) / 1000:6.2f}"
        )
    waits: dict[str, list[float]] = {}
    for path in sorted(folder.glob("waits-*.json")):
        for seconds, thread in json.loads(path.read_text()):
            waits.setdefault(thread, []).append(seconds * 1000)
    if waits:
        print("waits for the write lock (first refusal to commit), ms:")
        for thread, ms in sorted(waits.items()):
            ms.sort()
            print(
                f"{thread[:18]:<18} {'':<44} {len(ms):6d} {percentile(ms, 0.5):6.1f} "
                f"{percentile(ms, 0.9):6.1f} {percentile(ms, 0.99):6.1f} {ms[-1]:6.1f} "
                f"{sum(ms) / 1000:6.2f}"
            )


HEADER = (
    f"{'rate/s':>7} {'acked/s':>8} {'flat':>5} {'growth/s':>8} {'peak':>6} "
    f"{'ACK p50':>8} {'p99 ms':>7} {'peer p50':>8} {'p99 ms':>7} {'p99 x':>6} "
    f"{'AA->deliv p50':>13} {'p99 s':>6} {'drain s':>7} "
    f"{'CPU ms/ord':>10} {'peer ms/msg':>11} {'CPU x':>6}"
)


def print_row(r: RateResult) -> None:
    p99x = r.ack_p99_ms / r.peer_ack_p99_ms if r.peer_ack_p99_ms else 0.0
    cpux = r.cpu_ms_per_order / r.peer_cpu_ms_per_msg if r.peer_cpu_ms_per_msg else 0.0
    print(
        f"{r.rate:7.0f} {r.acked_per_s:8.0f} {'yes' if r.backlog_flat else 'NO':>5} "
        f"{r.backlog_growth_per_s:8.0f} {r.backlog_peak:6d} "
        f"{r.ack_p50_ms:8.2f} {r.ack_p99_ms:7.2f} {r.peer_ack_p50_ms:8.2f} "
        f"{r.peer_ack_p99_ms:7.2f} {p99x:6.1f} "
        f"{r.delivered_p50_s:13.3f} {r.delivered_p99_s:6.2f} {r.drain_s:7.1f} "
        f"{r.cpu_ms_per_order:10.3f} {r.peer_cpu_ms_per_msg:11.3f} {cpux:6.1f}",
        flush=True,
    )
    roles = ", ".join(f"{role} {ms:.3f}" for role, ms in r.cpu_ms_per_order_by_role.items())
    print(f"{'':7} CPU ms/order by process: {roles}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[250, 500, 1000, 1500])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per rate")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--database-url", default="", help="an empty, migrated database")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", default=None, help="where the SQLite file and logs go")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="labintake serve processes on the one database (PostgreSQL: several instances)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="no warm-up: the first rate starts as soon as the service answers (a burst "
        "right after a start; its CPU per order includes the start-up)",
    )
    parser.add_argument(
        "--lock-holds",
        action="store_true",
        help="record how long each write transaction holds the database (warm-up included)",
    )
    args = parser.parse_args()
    if args.instances > 1 and not (args.database_url or args.database == "postgresql"):
        parser.error("several instances share a PostgreSQL database (--database postgresql)")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="labintake-pipeline-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.database_url:
            url = args.database_url
        elif args.database == "postgresql":
            url = stack.enter_context(fresh_postgresql_database("labintake_pipeline"))
        else:
            url = f"sqlite:///{workdir / 'pipeline.sqlite3'}"
            migrate(url)
        print(
            f"pipeline: {args.database_url or args.database}, {args.instances} instance(s), "
            f"{args.seconds:g} s per rate, "
            f"{args.connections} connections, load average {os.getloadavg()[0]:.1f}; "
            f"logs in {workdir}",
            flush=True,
        )
        print(HEADER, flush=True)
        report = run(args, url, workdir)
    if args.lock_holds:
        print_lock_holds(workdir / "lock-holds")
    print(
        "flat: backlog growth < 10% of the rate per second over the second half of the load; "
        "x: labintake / python-hl7 in-memory peer, same run"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"pipeline-{stamp}.json"
    path.write_text(json.dumps(asdict(report), indent=1))
    print(f"figures saved to {path}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
