"""Intake benchmark: labintake's durable intake against two in-memory peers, same load.

Run ``python -m benchmarks.intake`` (a few minutes) or ``python -m benchmarks.intake --quick``
(under a minute, for smoke tests). In one run it starts, each as a subprocess on loopback:

- ``labintake serve`` on a fresh SQLite file (WAL, synchronous FULL), development mode;
- python-hl7's asyncio MLLP server: ``hl7.parse`` + ``create_ack``, nothing stored;
- hl7apy's MLLPServer: ``parse_message`` + an hl7apy ACK, nothing stored (one message per
  connection, so its load reconnects for every message).

The same closed-loop load (``benchmarks.loadgen``) runs at each connection count against each
server, in rounds that alternate the servers so that background noise hits all of them alike.
Then labintake is stopped and its reading worker drains the backlog of stored messages
(``labintake.reading.worker.read_pending``), timed. The table shows msg/s, p50/p99 ACK latency,
the ratio to the python-hl7 peer, the drain rate and labintake's peak RSS, with PASS/FAIL per
target; the figures are saved as JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from benchmarks import drain, servers
from benchmarks.loadgen import LoadResult, LoadSpec, percentile, run_load
from benchmarks.messages import synthetic_orders

RESULTS_DIR = Path(__file__).resolve().parent / "results"

LABINTAKE = "labintake"
LISTENER = "listener"
PYTHON_HL7 = "python-hl7"
HL7APY = "hl7apy"
LABELS = {
    LABINTAKE: "labintake serve (durable, SQLite FULL)",
    LISTENER: "  its listener alone (no workers)",
    PYTHON_HL7: "python-hl7 peer (in memory)",
    HL7APY: "hl7apy peer (in memory, 1 msg/conn)",
}

# Targets on a 2-core machine.
TARGET_RATIO = 1.5
TARGET_P99_MS = 10.0
TARGET_CONNECTIONS = 4
TARGET_DRAIN_PER_S = 500.0
TARGET_RSS_MB = 300.0


@dataclass(frozen=True, slots=True)
class Profile:
    rounds: int
    seconds: float
    warmup_seconds: float
    hl7apy_seconds: float
    drain_seconds: float
    drain_messages: int
    connections: tuple[int, ...] = (4, 16)
    servers: tuple[str, ...] = (LABINTAKE, LISTENER, PYTHON_HL7, HL7APY)


QUICK = Profile(
    rounds=1,
    seconds=2.5,
    warmup_seconds=0.5,
    hl7apy_seconds=1.5,
    drain_seconds=6.0,
    drain_messages=3000,
)
FULL = Profile(
    rounds=3,
    seconds=8.0,
    warmup_seconds=2.0,
    hl7apy_seconds=5.0,
    drain_seconds=40.0,
    drain_messages=20000,
)


@dataclass(slots=True)
class Cell:
    """All rounds of one server at one connection count."""

    server: str
    connections: int
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float:
        return float(statistics.median(float(r[key]) for r in self.rounds))


def filesystem_of(path: Path) -> str:
    """The filesystem type holding `path` (longest mount point in /proc/mounts)."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, parts[2]
    return kind


def fsync_probe(folder: Path, samples: int = 300) -> dict[str, float]:
    """Latency of appending 4 KiB to a file and fsync-ing it, where the database lives.

    With synchronous FULL every commit waits for one such flush, so with N connections in
    closed loop the intake can ACK at most about N / (mean flush time) messages per second.
    """
    path = folder / "fsync-probe"
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(samples):
            os.write(fd, b"\0" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return {
        "p50_ms": round(percentile(times, 0.50) * 1000, 3),
        "p99_ms": round(percentile(times, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(times) * 1000, 3),
    }


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


async def _measure(
    port: int, connections: int, seconds: float, reconnect: bool, prefix: str
) -> LoadResult:
    spec = LoadSpec(
        port=port,
        connections=connections,
        duration_seconds=seconds,
        reconnect_per_message=reconnect,
        ack_timeout_seconds=30.0,
    )
    return await run_load(spec, synthetic_orders(prefix))


class Bench:
    def __init__(self, profile: Profile, workdir: Path, echo: Callable[[str], None]) -> None:
        self.profile = profile
        self.workdir = workdir
        self.echo = echo
        self.database_path = workdir / "labintake.sqlite3"
        self.database_url = f"sqlite:///{self.database_path}"
        self.cells: dict[tuple[str, int], Cell] = {}
        self.prefixes: Iterator[int] = count()
        self.rss_peak_bytes = 0  # sum of each service process's own peak (VmHWM)
        self.rss_sampled_peak_bytes = 0  # peak of the service's total RSS, sampled
        self.after_load: dict[str, int] = {}
        self.flush: dict[str, float] = {}
        self.drain = drain.Drain()

    def _prefix(self) -> str:
        # Control ids unique across the whole run, so labintake never sees a duplicate.
        return f"B{next(self.prefixes):03d}"

    def _load(self, server: servers.ServerProcess, name: str, connections: int) -> None:
        reconnect = name == HL7APY
        seconds = self.profile.hl7apy_seconds if reconnect else self.profile.seconds
        assert server.port is not None
        if self.profile.warmup_seconds:
            asyncio.run(
                _measure(
                    server.port, connections, self.profile.warmup_seconds, reconnect, self._prefix()
                )
            )
        cpu_before = server.cpu_seconds()
        result = asyncio.run(_measure(server.port, connections, seconds, reconnect, self._prefix()))
        cpu = server.cpu_seconds() - cpu_before
        summary = result.summary()
        # CPU time the server spent per ACK: steadier than msg/s when the machine is shared.
        summary["server_cpu_ms_per_msg"] = (
            round(cpu * 1000 / result.acked, 3) if result.acked else 0.0
        )
        summary["load_average_1m"] = round(os.getloadavg()[0], 2)
        if result.connection_errors or result.mismatched_acks or set(result.ack_codes) - {"AA"}:
            summary["problem"] = True
        cell = self.cells.setdefault((name, connections), Cell(name, connections))
        cell.rounds.append(summary)
        self.echo(
            f"  {name:<11} {connections:>3} conns  {summary['msg_per_s']:>8.1f} msg/s  "
            f"p50 {summary['p50_ms']:>7.2f} ms  p99 {summary['p99_ms']:>8.2f} ms  "
            f"cpu {summary['server_cpu_ms_per_msg']:>6.3f} ms/msg  "
            f"{summary['ack_codes']}"
            + (f"  errors {summary['connection_errors']}" if result.connection_errors else "")
        )

    def run_intake(self) -> None:
        from labintake.db import migrate

        wanted = self.profile.servers
        started: list[servers.ServerProcess] = []
        targets: dict[str, servers.ServerProcess] = {}
        sampling = contextlib.ExitStack()
        memory: servers.MemorySampler | None = None
        try:
            if LABINTAKE in wanted:
                migrate(self.database_url)
                targets[LABINTAKE] = servers.labintake(self.database_url, self.workdir)
            if LISTENER in wanted:
                listener_url = f"sqlite:///{self.workdir / 'listener.sqlite3'}"
                migrate(listener_url)
                targets[LISTENER] = servers.labintake_listener(listener_url, self.workdir)
            if PYTHON_HL7 in wanted:
                targets[PYTHON_HL7] = servers.peer(
                    "python_hl7_server", self.workdir / "python_hl7.log"
                )
            if HL7APY in wanted:
                targets[HL7APY] = servers.peer("hl7apy_server", self.workdir / "hl7apy.log")
            memory = servers.MemorySampler(targets[LABINTAKE]) if LABINTAKE in targets else None
            if memory is not None:
                sampling.enter_context(memory)  # from labintake's start-up on
            for server in targets.values():
                started.append(server)
                server.start()
                server.pause()
            for round_number in range(1, self.profile.rounds + 1):
                self.echo(f"round {round_number}/{self.profile.rounds}")
                for connections in self.profile.connections:
                    for name, server in targets.items():
                        # Only the server under load runs: the others (and the background
                        # work labintake still has from earlier loads) are stopped meanwhile.
                        server.resume()
                        try:
                            self._load(server, name, connections)
                        finally:
                            server.pause()
            if LABINTAKE in targets:
                self.rss_peak_bytes = targets[LABINTAKE].peak_rss_bytes()
                self.after_load = drain.statuses(self.database_url)
        finally:
            sampling.close()
            if memory is not None:
                self.rss_sampled_peak_bytes = max(self.rss_sampled_peak_bytes, memory.peak_bytes)
            for server in started:
                # The databases are thrown away: no need to wait for background batches.
                code = server.stop(timeout=5.0)
                if code == -9:
                    self.echo(f"  {server.name} still busy 5 s after SIGTERM; killed (-9)")
                elif code not in (0, None, -15):
                    self.echo(f"  {server.name} exited with {code}; log: {server.log_path}")

    def run_drain(self) -> None:
        """A backlog stored with no reader running, then drained by a fresh service."""
        from labintake.db import migrate

        url = f"sqlite:///{self.workdir / 'drain.sqlite3'}"
        migrate(url)
        count = self.profile.drain_messages
        self.echo(f"storing a backlog of {count} messages through the intake path (no reader)")
        accepted = drain.store_backlog(url, count)
        if accepted != count:
            self.echo(f"  only {accepted} of {count} were accepted")
        self.echo("starting labintake serve on it and timing its reader")
        self.drain = drain.watch(url, self.workdir / "drain", self.profile.drain_seconds)
        self.rss_peak_bytes = max(self.rss_peak_bytes, self.drain.service_peak_rss_bytes)
        self.rss_sampled_peak_bytes = max(
            self.rss_sampled_peak_bytes, self.drain.service_sampled_peak_rss_bytes
        )

    # -- reporting ------------------------------------------------------------------------
    def targets(self) -> list[tuple[str, bool | None, str]]:
        """(target, passed or None when not measured, measured value)."""
        out: list[tuple[str, bool | None, str]] = []
        mine = self.cells.get((LABINTAKE, TARGET_CONNECTIONS))
        peer = self.cells.get((PYTHON_HL7, TARGET_CONNECTIONS))
        if mine and peer and peer.median("msg_per_s") > 0:
            ratio = mine.median("msg_per_s") / peer.median("msg_per_s")
            out.append(
                (
                    f"intake >= {TARGET_RATIO}x python-hl7 msg/s at {TARGET_CONNECTIONS} conns",
                    ratio >= TARGET_RATIO,
                    f"{ratio:.2f}x",
                )
            )
        if mine:
            p99 = mine.median("p99_ms")
            out.append(
                (
                    f"intake p99 ACK <= {TARGET_P99_MS:g} ms at {TARGET_CONNECTIONS} conns",
                    p99 <= TARGET_P99_MS,
                    f"{p99:.2f} ms",
                )
            )
        if LABINTAKE not in self.profile.servers:
            return out
        if self.drain.read:
            out.append(
                (
                    f"received -> orders read >= {TARGET_DRAIN_PER_S:g} msg/s (backlog drain)",
                    self.drain.rate >= TARGET_DRAIN_PER_S,
                    f"{self.drain.rate:.0f} msg/s",
                )
            )
        else:
            out.append(
                (
                    f"received -> orders read >= {TARGET_DRAIN_PER_S:g} msg/s (backlog drain)",
                    None,
                    self.drain.note or "nothing drained",
                )
            )
        sampled_mb = self.rss_sampled_peak_bytes / 1024 / 1024
        summed_mb = self.rss_peak_bytes / 1024 / 1024
        out.append(
            (
                f"service peak RSS <= {TARGET_RSS_MB:g} MB",
                sampled_mb <= TARGET_RSS_MB,
                f"{sampled_mb:.0f} MB at the sampled peak of the total (sum of each process's "
                f"own peak: {summed_mb:.0f} MB)",
            )
        )
        return out

    def table(self) -> str:
        lines = [
            f"{'server':<42}{'conns':>6}{'msg/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'vs python-hl7':>15}{'CPU ms/msg':>12}",
            "-" * 103,
        ]
        for connections in self.profile.connections:
            base = self.cells.get((PYTHON_HL7, connections))
            for name in (LABINTAKE, LISTENER, PYTHON_HL7, HL7APY):
                cell = self.cells.get((name, connections))
                if cell is None:
                    continue
                rate = cell.median("msg_per_s")
                ratio = (
                    f"{rate / base.median('msg_per_s'):.2f}x"
                    if base and base.median("msg_per_s") > 0
                    else "-"
                )
                lines.append(
                    f"{LABELS[name]:<42}{connections:>6}{rate:>10.1f}"
                    f"{cell.median('p50_ms'):>9.2f}{cell.median('p99_ms'):>9.2f}{ratio:>15}"
                    f"{cell.median('server_cpu_ms_per_msg'):>12.3f}"
                )
        lines.append("")
        if LABINTAKE in self.profile.servers:
            d = self.drain
            if d.read:
                lines.append(
                    f"received -> orders read (service's reader on a backlog of {d.backlog}): "
                    f"{d.read} messages in {d.seconds:.1f} s = {d.rate:.0f} msg/s"
                )
                lines.append(f"  after: {d.statuses_after}" + (f"; {d.note}" if d.note else ""))
            if self.after_load:
                lines.append(f"intake database at the end of the load: {self.after_load}")
            else:
                lines.append(
                    f"received -> orders read (backlog drain): {d.note or 'nothing drained'}"
                )
            lines.append(
                f"labintake peak RSS (all its processes): "
                f"{self.rss_sampled_peak_bytes / 1024 / 1024:.0f} MB sampled every 0.2 s; "
                f"sum of each process's own peak (VmHWM) {self.rss_peak_bytes / 1024 / 1024:.0f} MB"
            )
            if self.flush:
                lines.append(
                    f"disk flush (4 KiB + fsync) where the database lives: p50 "
                    f"{self.flush['p50_ms']} ms, p99 {self.flush['p99_ms']} ms, mean "
                    f"{self.flush['mean_ms']} ms"
                )
            lines.append("")
        for target, passed, value in self.targets():
            verdict = "n/a " if passed is None else ("PASS" if passed else "FAIL")
            lines.append(f"{verdict}  {target}: {value}")
        return "\n".join(lines)

    def document(self, mode: str) -> dict[str, Any]:
        return {
            "benchmark": "intake",
            "mode": mode,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": _machine(),
            "profile": {
                "rounds": self.profile.rounds,
                "seconds": self.profile.seconds,
                "hl7apy_seconds": self.profile.hl7apy_seconds,
                "warmup_seconds": self.profile.warmup_seconds,
                "connections": list(self.profile.connections),
            },
            "database": "SQLite file, WAL, synchronous=FULL",
            "cells": [
                {
                    "server": c.server,
                    "connections": c.connections,
                    "median_msg_per_s": c.median("msg_per_s"),
                    "median_p50_ms": c.median("p50_ms"),
                    "median_p99_ms": c.median("p99_ms"),
                    "median_server_cpu_ms_per_msg": c.median("server_cpu_ms_per_msg"),
                    "rounds": c.rounds,
                }
                for c in self.cells.values()
            ],
            "drain": self.drain.summary(),
            "intake_database_after_load": self.after_load,
            "labintake_peak_rss_mb": round(self.rss_sampled_peak_bytes / 1024 / 1024, 1),
            "labintake_sum_of_process_peaks_rss_mb": round(self.rss_peak_bytes / 1024 / 1024, 1),
            "targets": [{"target": t, "passed": p, "value": v} for t, p, v in self.targets()],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.intake", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="one short round (< 60 s)")
    parser.add_argument("--rounds", type=int, help="rounds of the whole matrix")
    parser.add_argument("--seconds", type=float, help="measured seconds per load")
    parser.add_argument(
        "--connections", type=int, nargs="+", help="connection counts (default 4 16)"
    )
    parser.add_argument("--drain-messages", type=int, help="backlog size for the reader's drain")
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=list(LABELS),
        help="measure only these servers (default: all three)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="where the database and logs go (default benchmarks/results/)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, DB)")
    args = parser.parse_args(argv)

    profile = QUICK if args.quick else FULL
    profile = Profile(
        rounds=args.rounds or profile.rounds,
        seconds=args.seconds or profile.seconds,
        warmup_seconds=profile.warmup_seconds,
        hl7apy_seconds=min(profile.hl7apy_seconds, args.seconds or profile.hl7apy_seconds),
        drain_seconds=profile.drain_seconds,
        drain_messages=args.drain_messages or profile.drain_messages,
        connections=tuple(args.connections) if args.connections else profile.connections,
        servers=tuple(args.servers) if args.servers else profile.servers,
    )
    mode = "quick" if args.quick else "full"

    def echo(text: str) -> None:
        print(text, flush=True)

    RESULTS_DIR.mkdir(exist_ok=True)
    parent = args.workdir or RESULTS_DIR
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="work-", dir=parent))
    filesystem = filesystem_of(workdir)
    bench = Bench(profile, workdir, echo)
    flush = bench.flush = fsync_probe(workdir)
    echo(
        f"labintake intake benchmark ({mode}): {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; database on {filesystem} in {workdir}"
    )
    echo(
        f"disk flush (4 KiB append + fsync): p50 {flush['p50_ms']} ms, p99 {flush['p99_ms']} ms, "
        f"mean {flush['mean_ms']} ms; one commit per ACK round trip bounds N connections at "
        f"about N x {1000 / max(flush['mean_ms'], 0.001):.0f} msg/s"
    )
    if filesystem in {"tmpfs", "ramfs"}:
        echo("warning: the database is in memory, so synchronous FULL costs nothing; use --workdir")
    began = time.perf_counter()
    try:
        bench.run_intake()
        if LABINTAKE in profile.servers:
            bench.run_drain()
    except BaseException:
        echo(f"benchmark stopped; logs and database kept in {workdir}")
        raise
    echo("")
    echo(bench.table())
    document = bench.document(mode)
    document["wall_seconds"] = round(time.perf_counter() - began, 1)
    document["machine"]["database_filesystem"] = filesystem
    document["machine"]["fsync_4k"] = flush
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"intake-{mode}-{stamp}.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    echo(f"\nsaved {out.relative_to(servers.REPO)} ({document['wall_seconds']} s)")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [t for t in document["targets"] if t["passed"] is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
