"""CPU per order of the reading stage, in this thread or through the reading sandbox.

    .venv/bin/python -m benchmarks.reading_cpu                    # 2000 orders, SQLite, both ways
    .venv/bin/python -m benchmarks.reading_cpu --database-url postgresql+psycopg://...
    .venv/bin/python -m benchmarks.reading_cpu --profile sandbox  # cProfile of this process

Stores `--count` synthetic nine-segment ORM^O01 messages as intake leaves them (`received`),
then drains them with `read_pending` in batches of `--batch`, two ways, each on a freshly
stored backlog:

- `in-process`: the batch is read in this thread (what `benchmarks.stages` measures);
- `sandbox`: the batch is read in a `ReadingSandbox` child, as `labintake serve` runs it, and
  the plans come back over its pipe. The CPU is this process's (`time.process_time`) plus the
  child's (its run time from `/proc/<pid>/schedstat`), so what the process boundary costs
  (pickling, the pipe) is counted on both sides.

On PostgreSQL the server's own CPU is not counted. `--profile MODE` prints a cProfile top 25
(by own time) of this process for that mode. `benchmarks.stages` stays the reference for the
whole pipeline; this one isolates reading and the sandbox.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.databases import store_received
from labintake import heap
from labintake.db import make_engine, migrate
from labintake.hl7.limits import ReadingLimits
from labintake.interfaces import load_interfaces
from labintake.reading.sandbox import ReadingSandbox, StoredMessage
from labintake.reading.worker import BatchReading, read_pending

REPO = Path(__file__).resolve().parent.parent
MODES = ("in-process", "sandbox")


def child_cpu_seconds(pid: int | None) -> float:
    """CPU time a process has run so far (user and system), from the scheduler's count."""
    if pid is None:
        return 0.0
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def drain(url: str, count: int, batch: int, mode: str, profile: bool) -> tuple[float, float, int]:
    """(this process's CPU s, the sandbox child's CPU s, messages settled) for one drain."""
    migrate(url)
    engine = make_engine(url)
    interfaces_dir = REPO / "interfaces"
    registry = load_interfaces(interfaces_dir)
    limits = ReadingLimits()
    sandbox = ReadingSandbox(interfaces_dir, limits) if mode == "sandbox" else None
    reading = BatchReading(registry, limits, sandbox, budget_seconds=30.0)
    try:
        store_received(engine, count, "RCPU")
        if sandbox is not None:
            # started and ready (a purged message reads at once): start-up is not measured
            sandbox.read(StoredMessage(0, None, "", "", ""), 60.0)
        heap.settle()
        profiler = cProfile.Profile() if profile else None
        child_before = child_cpu_seconds(sandbox.pid if sandbox else None)
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        done = 0
        while settled := read_pending(engine, registry, batch, reading=reading):
            done += settled
        if profiler is not None:
            profiler.disable()
        cpu = time.process_time() - cpu
        child = child_cpu_seconds(sandbox.pid if sandbox else None) - child_before
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(f"--- cProfile: {mode} (top 25, own time) ---\n{out.getvalue()}")
    finally:
        if sandbox is not None:
            sandbox.stop()
        engine.dispose()
    return cpu, child, done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--mode", choices=MODES, action="append")
    parser.add_argument("--profile", choices=MODES, default="")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    print(f"{'mode':<12}{'done':>7}{'parent CPU s':>14}{'child CPU s':>13}{'CPU ms/order':>14}")
    for mode in args.mode or MODES:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            url = args.database_url or f"sqlite:///{Path(tmp) / 'reading.sqlite3'}"
            cpu, child, done = drain(url, args.count, args.batch, mode, args.profile == mode)
        per = (cpu + child) * 1000 / max(done, 1)
        print(f"{mode:<12}{done:>7}{cpu:>14.3f}{child:>13.3f}{per:>14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
