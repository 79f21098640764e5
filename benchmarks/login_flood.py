"""A sign-in flood against the web app while MLLP messages arrive: does the listener notice?

```sh
.venv/bin/python -m benchmarks.login_flood              # both scenarios, about 2 minutes
.venv/bin/python -m benchmarks.login_flood --scenarios unthrottled --flood-seconds 30
```

`labintake serve` runs as a real subprocess on a fresh database (SQLite file by default,
`--database-url` for PostgreSQL), with one user. A paced MLLP load (`--rate` messages per
second over two persistent connections) runs throughout; its ACK latencies are measured
first for `--baseline-seconds` with nothing else going on, then for `--flood-seconds` while
`--threads` threads post wrong passwords to `/login` as fast as they are answered, each with
its own browser session (a real login form token and pre-session cookie).

What is timed is write to ACK only: the pacing waits (an `asyncio.sleep`) before a message
is written, outside its timed window. The flood runs in a process of its own, so its 40
threads do not compete with the load generator for this process's interpreter lock: what
the ACK latency shows is the service's, not the benchmark's. (Before, the pacing slept with
`time.sleep` in the load generator's event loop, adding up to 1/rate to ACKs due meanwhile,
and the flood's threads shared the load generator's interpreter.)

Two scenarios, each on a service of its own:

- `default`: the service as shipped, with its sign-in rate limits (most attempts get 429);
- `unthrottled`: rate limits lifted (`LABINTAKE_LOGIN_RATE_PER_*` at a million a minute), so
  every attempt reaches the password check: what is left is the process separation and the
  bounded hashing slots (attempts beyond them get 503).

`--repeat N` runs each scenario N times (each on a fresh service): on a shared machine the
spread between runs is part of the result. Each run reports the flood's p50/p99 as a ratio
to the baseline's of the same run.

`--flood-niceness 19` runs the flood's client at the lowest CPU priority: on one machine the
attacker's 40 threads take CPU from the listener too, which a flood from another machine
would not; the difference between the two runs is the client's share. Each run reports
the CPU seconds the flood's client, the web process and the listener used during the flood:
on a 2-core machine the client's 40 threads take about as much CPU as the web process they
flood. The client sends its next attempt as soon as one is answered, so a service that
answers faster is sent more attempts; compare the web process's CPU per attempt.

`--web-niceness N` runs the web process at niceness N (`LABINTAKE_WEB_NICENESS`, default 5).

`--source DIR` runs the service from another checkout (say, the release before the web app
had a process of its own), for a comparison on the same machine in the same state.

Memory is sampled every 0.1 s from ``/proc``: the listener process alone (VmRSS) and the web
process. Results are printed and saved as JSON under `benchmarks/results/`. The exit status
is 1 when the listener's ACK p99 during the flood is over `--p99-limit-ms` (20 ms) or its
memory grew more than `--memory-limit-mb` (10 MB).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from benchmarks import servers
from benchmarks.loadgen import LoadResult, LoadSpec, run_load_blocking
from benchmarks.messages import synthetic_orders
from labintake.auth.accounts import create_user, find_user
from labintake.auth.roles import Role
from labintake.db import make_engine, migrate, session_scope

RESULTS_DIR = Path(__file__).resolve().parent / "results"
USER = "flood-target"
PASSWORD = "the real passphrase, never sent"
_WEB = re.compile(r"web screen and API on http://[^:]+:(\d+)/(?: \(process (\d+)\))?")
_LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
UNTHROTTLED = {
    "LABINTAKE_LOGIN_RATE_PER_ADDRESS": "1000000/minute",
    "LABINTAKE_LOGIN_RATE_PER_ACCOUNT": "1000000/minute",
}


@dataclass
class Phase:
    acks: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    ack_codes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, load: LoadResult) -> Phase:
        return cls(
            acks=load.acked,
            p50_ms=round(load.latency_ms(0.5), 1),
            p99_ms=round(load.latency_ms(0.99), 1),
            max_ms=round(max(load.latencies, default=0.0) * 1000.0, 1),
            ack_codes=dict(load.ack_codes),
        )


@dataclass
class Scenario:
    name: str
    run: int
    load_average: list[str]
    baseline: Phase
    flood: Phase
    listener_rss_mb_before: float
    listener_rss_mb_after: float
    listener_rss_mb_peak: float
    web_rss_mb_before: float
    web_rss_mb_peak: float
    login_answers: dict[str, int]
    login_attempts_per_second: float
    login_latency_p50_ms: float
    login_latency_p99_ms: float
    listener_cpu_seconds: float = 0.0
    web_cpu_seconds: float = 0.0
    flood_client_cpu_seconds: float = 0.0

    @property
    def web_cpu_ms_per_attempt(self) -> float:
        attempts = sum(self.login_answers.values())
        return round(self.web_cpu_seconds * 1000 / attempts, 2) if attempts else 0.0

    @property
    def p50_ratio(self) -> float:
        return round(self.flood.p50_ms / self.baseline.p50_ms, 2) if self.baseline.p50_ms else 0.0

    @property
    def p99_ratio(self) -> float:
        return round(self.flood.p99_ms / self.baseline.p99_ms, 2) if self.baseline.p99_ms else 0.0


def _mb(n: int) -> float:
    return round(n / 1024 / 1024, 1)


class Sampler:
    """Peak resident memory of two processes, sampled in a thread."""

    def __init__(self, listener: int, web: int) -> None:
        self.pids = {"listener": listener, "web": web}
        self.peak = dict.fromkeys(self.pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], servers.rss_bytes_of(pid))
            self._stop.wait(0.1)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _flood(
    port: int, threads: int, seconds: float, niceness: int, started: Any, results: Connection
) -> None:
    """`threads` browsers posting wrong passwords for `seconds` (`started` is set when they
    begin, once each has its form); sends (answers, latencies) on `results`. Runs in a
    process of its own (see the module docstring), at `niceness`."""
    if niceness:
        os.nice(niceness)
    answers: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(threads + 1)
    deadline = [0.0]
    base = f"http://127.0.0.1:{port}"

    def browser(n: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            page = client.get("/login")
            found = _LOGIN_TOKEN.search(page.text)
            assert found is not None, page.text[:200]
            form = {"username": USER, "password": f"wrong guess {n}", "login_token": found[1]}
            ready.wait()  # every browser has its form: the flood starts at once
            while time.monotonic() < deadline[0]:
                began = time.perf_counter()
                try:
                    status = str(client.post("/login", data=form).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    answers[status] += 1
                    latencies.append(time.perf_counter() - began)

    workers = [threading.Thread(target=browser, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    deadline[0] = time.monotonic() + 120 + seconds  # until the forms are fetched
    ready.wait()
    deadline[0] = time.monotonic() + seconds
    cpu_at_start = time.process_time()
    started.set()
    for worker in workers:
        worker.join()
    results.send((dict(answers), latencies, time.process_time() - cpu_at_start))
    results.close()


class Flood:
    """The sign-in flood in a spawned process: `start`, wait for `flooding`, `join`."""

    def __init__(self, port: int, threads: int, seconds: float, niceness: int = 0) -> None:
        context = multiprocessing.get_context("spawn")
        self.flooding = context.Event()
        self._results, child_end = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_flood,
            args=(port, threads, seconds, niceness, self.flooding, child_end),
            name="login-flood",
        )
        self._child_end = child_end

    def start(self) -> None:
        self._process.start()
        self._child_end.close()

    def join(self) -> tuple[Counter[str], list[float], float]:
        """The answers, their latencies, and the CPU seconds the flood's client used."""
        answers, latencies, cpu = self._results.recv()
        self._process.join(30)
        return Counter(answers), latencies, cpu


def _mllp(port: int, prefix: str, rate: float, seconds: float) -> LoadResult:
    spec = LoadSpec(
        port=port, connections=2, duration_seconds=seconds, stop_on_error=False, rate=rate
    )
    return run_load_blocking(spec, synthetic_orders(prefix))


def run_scenario(name: str, run: int, args: argparse.Namespace, workdir: Path) -> Scenario:
    url = args.database_url or f"sqlite:///{workdir / f'{name}-{run}.sqlite3'}"
    migrate(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        if find_user(session, USER) is None:  # a rerun on one PostgreSQL database keeps it
            create_user(session, USER, Role.CODER, PASSWORD)
    engine.dispose()
    extra = dict(UNTHROTTLED) if name == "unthrottled" else {}
    if args.web_niceness is not None:
        extra["LABINTAKE_WEB_NICENESS"] = str(args.web_niceness)
    if args.source is not None:  # another checkout's labintake, e.g. before a change
        extra["PYTHONPATH"] = str(args.source.resolve())
    server = servers.labintake(url, workdir / f"{name}-{run}", extra_env=extra)
    server.start(timeout=120)
    try:
        assert server.port is not None
        found = _WEB.search(server.log_path.read_text())
        assert found is not None, server.log_tail()
        # A service from before the web app had its own process serves it from the listener's.
        web_port, web_pid = int(found[1]), int(found[2] or server.pid)
        tag = f"{name[:1].upper()}{run}"
        _mllp(server.port, f"W{tag}", args.rate, 2.0)  # warm-up
        listener_before = servers.rss_bytes_of(server.pid)
        web_before = servers.rss_bytes_of(web_pid)
        load_average = Path("/proc/loadavg").read_text().split()[:3]
        baseline = _mllp(server.port, f"B{tag}", args.rate, args.baseline_seconds)
        flood = Flood(web_port, args.threads, args.flood_seconds, args.flood_niceness)
        with Sampler(server.pid, web_pid) as sampler:
            flood.start()
            flood.flooding.wait(180)  # the browsers fetch their sign-in forms first
            cpu_before = servers.cpu_seconds_of(server.pid), servers.cpu_seconds_of(web_pid)
            during = _mllp(server.port, f"F{tag}", args.rate, args.flood_seconds)
            cpu_after = servers.cpu_seconds_of(server.pid), servers.cpu_seconds_of(web_pid)
            answers, latencies, flood_cpu = flood.join()
        listener_after = servers.rss_bytes_of(server.pid)
    finally:
        server.stop()
    latencies.sort()
    total = sum(answers.values())
    return Scenario(
        name=name,
        run=run,
        load_average=load_average,
        baseline=Phase.of(baseline),
        flood=Phase.of(during),
        listener_rss_mb_before=_mb(listener_before),
        listener_rss_mb_after=_mb(listener_after),
        listener_rss_mb_peak=_mb(sampler.peak["listener"]),
        web_rss_mb_before=_mb(web_before),
        web_rss_mb_peak=_mb(sampler.peak["web"]),
        login_answers=dict(answers),
        login_attempts_per_second=round(total / args.flood_seconds, 1),
        login_latency_p50_ms=round(latencies[len(latencies) // 2] * 1000, 1) if latencies else 0,
        login_latency_p99_ms=(
            round(latencies[int(len(latencies) * 0.99)] * 1000, 1) if latencies else 0
        ),
        listener_cpu_seconds=round(cpu_after[0] - cpu_before[0], 2),
        web_cpu_seconds=round(cpu_after[1] - cpu_before[1], 2),
        flood_client_cpu_seconds=round(flood_cpu, 2),
    )


def summarize(results: list[Scenario]) -> None:
    print()
    print(
        "| scenario | run | load avg | phase | ACKs | p50 ms | p99 ms | max ms | "
        "flood / baseline p50, p99 | listener RSS MB | web RSS MB |"
    )
    print("|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.run} | {r.load_average[0]} | baseline | {r.baseline.acks} | "
            f"{r.baseline.p50_ms} | {r.baseline.p99_ms} | {r.baseline.max_ms} | | "
            f"{r.listener_rss_mb_before} | {r.web_rss_mb_before} |"
        )
        print(
            f"| {r.name} | {r.run} | | flood | {r.flood.acks} | {r.flood.p50_ms} | "
            f"{r.flood.p99_ms} | {r.flood.max_ms} | {r.p50_ratio} x, {r.p99_ratio} x | "
            f"{r.listener_rss_mb_peak} (peak), {r.listener_rss_mb_after} (after) | "
            f"{r.web_rss_mb_peak} (peak) |"
        )
    print()
    for r in results:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r.login_answers.items()))
        print(
            f"{r.name} run {r.run}: {r.login_attempts_per_second} sign-in attempts/s "
            f"answered ({answers}); "
            f"sign-in answer p50 {r.login_latency_p50_ms} ms, p99 {r.login_latency_p99_ms} ms; "
            f"CPU s during the flood: listener {r.listener_cpu_seconds}, web "
            f"{r.web_cpu_seconds} ({r.web_cpu_ms_per_attempt} ms per attempt), flood client "
            f"{r.flood_client_cpu_seconds}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--scenarios", nargs="+", default=["default", "unthrottled"])
    parser.add_argument("--threads", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario")
    parser.add_argument(
        "--flood-niceness",
        type=int,
        default=0,
        help="run the flood's client at this niceness (19: as if it came from another "
        "machine, taking this one's CPU only when nothing else wants it)",
    )
    parser.add_argument(
        "--web-niceness", type=int, help="the web process's niceness (service default: 5)"
    )
    parser.add_argument("--flood-seconds", type=float, default=15.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=50.0, help="MLLP messages per second")
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--p99-limit-ms", type=float, default=20.0)
    parser.add_argument("--memory-limit-mb", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where the SQLite files go (default: the temporary folder); on a tmpfs such as "
        "/dev/shm commits wait for no disk, which leaves CPU and memory as what is measured",
    )
    parser.add_argument(
        "--source", type=Path, help="run labintake from this checkout (to compare versions)"
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="labintake-login-flood-", dir=args.workdir))
    results = [
        run_scenario(name, run, args, workdir)
        for run in range(1, args.repeat + 1)
        for name in args.scenarios
    ]
    summarize(results)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"login_flood-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "load_average": Path("/proc/loadavg").read_text().split()[:3],
                "options": {
                    k: str(v) if isinstance(v, Path) else v
                    for k, v in vars(args).items()
                    if k != "database_url"
                },
                "backend": "postgresql" if args.database_url else "sqlite",
                "workdir": str(workdir),
                "scenarios": [
                    asdict(r)
                    | {
                        "p50_ratio": r.p50_ratio,
                        "p99_ratio": r.p99_ratio,
                        "web_cpu_ms_per_attempt": r.web_cpu_ms_per_attempt,
                    }
                    for r in results
                ],
            },
            indent=2,
        )
    )
    print(f"\nsaved {out}")
    if args.keep:
        print(f"databases and logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [
        r.name
        for r in results
        if r.flood.p99_ms > args.p99_limit_ms
        or r.listener_rss_mb_peak - r.listener_rss_mb_before > args.memory_limit_mb
    ]
    if failed:
        print(f"over the limits: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
