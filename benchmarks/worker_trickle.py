"""The worker process's threads fed a steady trickle: CPU per order while the pipeline keeps up.

    python -m benchmarks.worker_trickle                  # 100 orders/s for 15 s, SQLite
    python -m benchmarks.worker_trickle --rate 50 --seconds 20

`benchmarks.pipeline` measures the whole service, but on a loaded machine its worker process
(nice 10) falls behind at any rate and does everything after the load, in large batches:
how the pipeline behaves while it keeps up with intake does not show there. Here the
worker's own threads run in this process, as `labintake serve` registers them
(`register_workers`: reading in its sandbox process, verification, release, delivery to the
stub LIS, the isolated reader), while another thread stores synthetic orders as intake leaves
them (`received`) at a steady rate, committing every few milliseconds, and tells the workers,
as the listener's intake writer does, that intake is busy but not saturated. After a warm-up
of 50 orders (the sandbox starting, the first loads of each stage), the CPU time of the
worker threads and the sandboxes (from ``/proc``; not the storing thread) from the start of
the trickle to the last order delivered, per order. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from benchmarks import servers
from benchmarks.messages import (
    SENDING_APPLICATION,
    SENDING_FACILITY,
    SyntheticMessage,
    synthetic_orders,
)
from benchmarks.pipeline import settled
from benchmarks.release import start_stub
from labintake.db import make_engine, migrate, utcnow
from labintake.models import InboundMessage

WARM_UP_ORDERS = 50
COMMIT_SECONDS = 0.004  # how often the trickle commits what fell due
BUSY_SHARE = 0.2  # what intake's writer is told it spends writing: steady, not saturated


def thread_cpu_seconds(native_ids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for native_id in native_ids:
        try:
            stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def _rows(messages: Any, count: int) -> list[dict[str, Any]]:
    taken: list[SyntheticMessage] = [next(messages) for _ in range(count)]
    return [
        {
            "received_at": utcnow(),
            "sending_application": SENDING_APPLICATION,
            "sending_facility": SENDING_FACILITY,
            "control_id": m.control_id,
            "message_type": "ORM^O01",
            "version": "2.5.1",
            "raw": m.raw,
            "ack_code": "AA",
            "ack": b"MSA|AA",
            "status": "received",
        }
        for m in taken
    ]


def _wait_settled(engine: Engine, target: int, timeout: float) -> float:
    started = time.monotonic()
    while settled(engine) < target and time.monotonic() - started < timeout:
        time.sleep(0.1)
    return time.monotonic() - started


def run(rate: float, seconds: float, url: str, lis_port: int) -> str:
    os.environ.update(servers.labintake_env(url))
    os.environ.update(LABINTAKE_LIS_HOST="127.0.0.1", LABINTAKE_LIS_PORT=str(lis_port))
    from labintake.background import BackgroundWorkers, register_workers
    from labintake.batching import IntakeSignal
    from labintake.config import Settings
    from labintake.stage_health import StageHealth

    engine, store = make_engine(url), make_engine(url)
    intake = IntakeSignal.create(multiprocessing.get_context("spawn"))
    workers = BackgroundWorkers(health=StageHealth(engine))
    extras = register_workers(Settings(), engine, workers, intake)
    workers.start()
    for extra in extras:
        extra.start()
    try:
        messages = synthetic_orders("TRICKLEX", seed=5)
        with store.begin() as conn:
            conn.execute(insert(InboundMessage), _rows(messages, WARM_UP_ORDERS))
        _wait_settled(store, WARM_UP_ORDERS, 120.0)
        time.sleep(2.0)
        threads = [t.native_id for t in threading.enumerate() if t.name.startswith("worker-")]
        sandboxes = [
            pid
            for extra in extras
            if (pid := getattr(getattr(extra, "sandbox", extra), "pid", None)) is not None
        ]

        def cpu() -> float:
            return thread_cpu_seconds([t for t in threads if t is not None]) + sum(
                servers.cpu_seconds(pid) for pid in sandboxes
            )

        before, started, sent, busy = cpu(), time.monotonic(), 0, 0.0
        while (now := time.monotonic()) - started < seconds:
            due = int((now - started) * rate) - sent
            if due > 0:
                began = time.perf_counter()
                with store.begin() as conn:
                    conn.execute(insert(InboundMessage), _rows(messages, due))
                busy += (time.perf_counter() - began) * BUSY_SHARE
                sent += due
                intake.committed(time.monotonic(), busy)
            time.sleep(COMMIT_SECONDS)
        backlog = sent + WARM_UP_ORDERS - settled(store)
        drain = _wait_settled(store, sent + WARM_UP_ORDERS, 120.0)
        used = cpu() - before
    finally:
        workers.stop()
        for extra in extras:
            extra.stop()
        engine.dispose()
        store.dispose()
    return (
        f"{rate:g} orders/s for {seconds:g} s ({sent} orders): worker threads + reading "
        f"sandboxes {used * 1000 / max(1, sent):.3f} ms CPU per order; backlog at the end of "
        f"the trickle {backlog}, delivered {drain:.1f} s after it"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="labintake-trickle-"))
    url = f"sqlite:///{workdir / 'trickle.sqlite3'}"
    migrate(url)
    stub, lis_port = start_stub()
    try:
        print(run(args.rate, args.seconds, url, lis_port), flush=True)
    finally:
        stub.terminate()
        stub.wait(10)


if __name__ == "__main__":
    main()
