"""`labintake serve` as one process: listener, web app, background workers, orderly stop."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast

import httpx
import pytest
from mllp_messages import msa, orm, stored_rows
from sqlalchemy.engine import Engine

from labintake.batching import (
    BATCH_IDLE,
    BATCH_SATURATED,
    BATCH_WHILE_INTAKE,
    GATHER_SECONDS,
    SATURATED_PAUSE_SECONDS,
    YIELD_POLL_SECONDS,
    YIELD_SECONDS,
    BatchPolicy,
    IntakeSignal,
    IntakeWatch,
    yield_to_intake,
)
from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.errors import ConfigurationError
from labintake.mllp.client import MLLPClient
from labintake.runtime import BackgroundWorkers, Service, check_schema


def test_service_takes_messages_serves_health_and_stops(settings: Settings, engine: Engine) -> None:
    async def go() -> None:
        service = Service(settings)
        await service.start()
        try:
            async with MLLPClient("127.0.0.1", service.mllp_port) as client:
                assert msa(await client.send(orm("R1").encode()))[1] == "AA"
            async with httpx.AsyncClient() as web:
                response = await web.get(f"http://127.0.0.1:{service.web_port}/healthz")
            assert response.status_code == 200
            assert "reader" in service.workers.names
        finally:
            await service.stop()

    asyncio.run(go())
    assert [r["control_id"] for r in stored_rows(engine)] == ["R1"]


def test_the_listener_loads_no_code_tables_and_settles_before_it_takes_messages(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code tables are the worker process's (it loads and checks them before it says it
    is ready); loaded in the listener too they held up the event loop for 0.3-0.4 s after
    the first messages were due. And what runs before listening (the heap settled) runs
    before the first connection is taken."""
    from labintake.codes import tables

    tables.clear_code_tables_cache()
    loaded: list[Path] = []
    real_load = tables.load_code_tables

    def recording_load(directory: Path, **options: object) -> object:
        loaded.append(directory)
        return real_load(directory, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(tables, "load_code_tables", recording_load)
    seen_before_listening: list[bool] = []

    with socket.socket() as probe:  # a port nothing listens on until the service does
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings.model_copy(update={"mllp_port": port})

    async def go() -> None:
        service = Service(settings)

        def before_listening() -> None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                seen_before_listening.append(True)
            else:
                seen_before_listening.append(False)

        await service.start(before_listening=before_listening)
        try:
            assert service.mllp_port == port
            async with MLLPClient("127.0.0.1", port) as client:
                assert msa(await client.send(orm("CT1").encode()))[1] == "AA"
        finally:
            await service.stop()

    asyncio.run(go())
    assert seen_before_listening == [True]
    assert loaded == []  # in this process; the worker process loaded its own


def test_service_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        with pytest.raises(ConfigurationError, match="run `labintake migrate` first"):
            check_schema(engine)
    finally:
        engine.dispose()


def test_background_workers_run_batches_until_stopped() -> None:
    backlog = [5, 3, 0, 2]
    calls = threading.Event()

    def batch() -> int:
        calls.set()
        return backlog.pop(0) if backlog else 0

    def broken() -> int:
        raise RuntimeError("database away")

    workers = BackgroundWorkers(idle_sleep=0.01, error_sleep=0.01)
    workers.register("drain", batch)
    workers.register("broken", broken)
    with pytest.raises(ConfigurationError):
        workers.register("drain", batch)
    workers.start()
    deadline = time.monotonic() + 5
    while workers.processed("drain") < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    workers.stop()
    assert workers.processed("drain") == 10
    assert calls.is_set()


def test_a_chain_runs_its_stages_in_turn_and_a_failing_stage_does_not_stop_the_others() -> None:
    order: list[str] = []
    first_backlog = [3, 2]
    second_backlog = [1]

    def first() -> int:
        order.append("first")
        return first_backlog.pop(0) if first_backlog else 0

    def broken() -> int:
        order.append("broken")
        raise RuntimeError("database away")

    def second() -> int:
        order.append("second")
        return second_backlog.pop(0) if second_backlog else 0

    workers = BackgroundWorkers(idle_sleep=0.01, error_sleep=60)
    workers.register_chain("pipeline", [("first", first), ("broken", broken), ("second", second)])
    with pytest.raises(ConfigurationError):
        workers.register("second", second)
    assert workers.names == ["first", "broken", "second"]
    assert workers.describe() == "pipeline (first -> broken -> second)"
    workers.start()
    deadline = time.monotonic() + 5
    while order.count("second") < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    workers.stop()
    assert order[:3] == ["first", "broken", "second"]  # one batch each, in order
    assert order.count("broken") == 1  # skipped for error_sleep after failing
    assert workers.failures("broken") == 1
    assert (workers.processed("first"), workers.processed("second")) == (5, 1)


def test_a_chain_rests_after_each_round_that_did_work_when_told_to() -> None:
    rounds: list[float] = []
    backlog = [1, 1, 1]

    def stage() -> int:
        rounds.append(time.monotonic())
        return backlog.pop(0) if backlog else 0

    workers = BackgroundWorkers(idle_sleep=60)
    workers.register_chain("pipeline", [("stage", stage)], pause=lambda: 0.2)
    workers.start()
    deadline = time.monotonic() + 5
    while len(rounds) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    workers.stop()
    gaps = [b - a for a, b in itertools.pairwise(rounds[:3])]
    assert len(gaps) == 2
    assert all(gap >= 0.2 for gap in gaps), gaps


def test_sigterm_finishes_in_flight_work_and_exits_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    migrate(url)
    (tmp_path / "no-interfaces").mkdir()  # no sender defined: an empty folder
    env = {
        **os.environ,
        "LABINTAKE_DEVELOPMENT": "1",
        "LABINTAKE_DATABASE_URL": url,
        "LABINTAKE_MLLP_PORT": "0",
        "LABINTAKE_WEB_PORT": "0",
        "LABINTAKE_INTERFACES_DIR": str(tmp_path / "no-interfaces"),
    }
    with subprocess.Popen(
        [sys.executable, "-m", "labintake", "serve"], env=env, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stderr is not None
            port = None
            lines: list[str] = []
            for line in process.stderr:
                lines.append(line)
                found = re.search(r"listening for HL7 \(MLLP\) on 127\.0\.0\.1:(\d+)", line)
                if found:
                    port = int(found.group(1))
                if "background workers:" in line:
                    break
            assert port is not None, "".join(lines)

            async def send() -> list[bytes]:
                async with MLLPClient("127.0.0.1", port) as client:
                    return [await client.send(orm(f"SIG{i}").encode()) for i in range(20)]

            acks = asyncio.run(send())
            assert all(msa(a)[1] == "AA" for a in acks)
            process.send_signal(signal.SIGTERM)
            remaining = process.stderr.read()
            assert process.wait(timeout=30) == 0, remaining
            assert "shutting down" in remaining
            assert "stopped" in remaining
        finally:
            if process.poll() is None:
                process.kill()
    engine = make_engine(url)
    try:
        assert len(stored_rows(engine)) == 20
    finally:
        engine.dispose()


def test_worker_process_reports_its_workers_and_stops(settings: Settings) -> None:
    from labintake.background import WorkerProcess

    workers = WorkerProcess(settings)
    workers.start()
    pid = workers.pid
    assert pid is not None
    try:
        # On a SQLite file the pipeline first moves intake's journal into the database.
        moving = ["intake-journal"] if settings.database_url.startswith("sqlite") else []
        stages = [*moving, "reader", "verifier", "release"]
        assert workers.names == [*stages, "deliver", "isolated-reader"]
        chain = " -> ".join(stages)
        assert workers.description == f"pipeline ({chain}), deliver, isolated-reader"
        assert _alive(pid)
    finally:
        workers.stop()
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


_ORPHAN_PARENT = """
import sys
from labintake.config import Settings
from labintake.background import WorkerProcess

if __name__ == "__main__":
    workers = WorkerProcess(Settings())
    workers.start()
    print(workers.pid, flush=True)
    sys.stdin.read()
"""


def test_worker_process_stops_when_serve_is_killed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orphan.sqlite3'}"
    migrate(url)
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_PARENT)
    env = {**os.environ, "LABINTAKE_DEVELOPMENT": "1", "LABINTAKE_DATABASE_URL": url}
    with subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(child):
            os.kill(child, signal.SIGKILL)
            pytest.fail("the worker process outlived the killed serve process")


class _Signal:
    """Stands in for the shared memory the intake writer updates."""

    def __init__(self) -> None:
        self.last_commit_at = 0.0
        self.busy_seconds = 0.0


def test_batches_are_large_when_intake_rests_and_small_when_it_is_saturated() -> None:
    intake = _Signal()
    policy = BatchPolicy(cast(IntakeSignal, intake))
    assert policy.size(now=100.0) == BATCH_IDLE  # no commit for a long time
    intake.last_commit_at = 100.0
    assert policy.size(now=100.1) == BATCH_SATURATED  # intake just started: careful
    # Writing 10% of the time over the next second: a steady load, medium batches.
    intake.busy_seconds, intake.last_commit_at = 0.1, 101.0
    assert policy.size(now=101.1) == BATCH_WHILE_INTAKE
    assert policy.size(now=101.2) == BATCH_WHILE_INTAKE  # kept until the next sample
    assert policy.pause() == 0.0
    # Writing 90% of the time: saturated, small batches and a rest after each round.
    intake.busy_seconds, intake.last_commit_at = 1.0, 102.1
    assert policy.size(now=102.1) == BATCH_SATURATED
    assert policy.pause() == SATURATED_PAUSE_SECONDS
    # Intake stopped: a backlog drains in large batches.
    assert policy.size(now=103.0) == BATCH_IDLE


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _steady_policy() -> tuple[_Signal, BatchPolicy, _Clock]:
    """A policy that has measured a steady intake (medium batches) at t=101.1."""
    intake = _Signal()
    clock = _Clock(101.1)
    policy = BatchPolicy(cast(IntakeSignal, intake), clock=clock)
    intake.last_commit_at = 100.0
    policy.size(now=100.1)
    intake.busy_seconds, intake.last_commit_at = 0.1, 101.0
    assert policy.size(now=101.1) == BATCH_WHILE_INTAKE
    return intake, policy, clock


def test_a_pipeline_that_keeps_up_with_intake_starts_a_round_at_most_every_gather_interval() -> (
    None
):
    intake, policy, clock = _steady_policy()
    sizes: list[int] = []

    def stage(size: int) -> int:
        sizes.append(size)
        return 3  # a few orders: less than a full batch

    batch = policy.stage(stage)
    clock.now = 101.2
    assert batch() == 3
    assert sizes == [BATCH_WHILE_INTAKE]  # the stage is given the policy's batch size
    assert policy.pause() == 0.0  # the first round: nothing to measure from
    # The next round began at 101.2 and took 0.05 s: it rests the rest of the interval.
    clock.now = intake.last_commit_at = 101.25
    assert batch() == 3
    assert policy.pause() == pytest.approx(GATHER_SECONDS - 0.05)
    # A round that took longer than the interval: the next one at once.
    clock.now = intake.last_commit_at = 101.25 + GATHER_SECONDS - 0.05 + GATHER_SECONDS + 0.01
    assert batch() == 3
    assert policy.pause() == 0.0


def test_a_full_batch_means_a_backlog_and_the_next_round_comes_at_once() -> None:
    intake, policy, clock = _steady_policy()
    clock.now = intake.last_commit_at = 101.2
    policy.pause()
    full = policy.stage(lambda size: size)
    few = policy.stage(lambda size: 1)
    assert few() == 1
    assert full() == BATCH_WHILE_INTAKE  # one stage of the round took a full batch
    clock.now = 101.21
    assert policy.pause() == 0.0
    assert few() == 1  # and the round after it, with no full batch, waits again
    clock.now = 101.22
    assert policy.pause() == pytest.approx(GATHER_SECONDS - 0.01)


def test_no_gathering_when_intake_rests_and_the_saturated_pause_when_it_is_saturated() -> None:
    intake, policy, clock = _steady_policy()
    few = policy.stage(lambda size: 1)
    clock.now = 101.2
    policy.pause()
    clock.now = 105.0  # no commit for seconds: intake rests, a backlog drains at once
    assert few() == 1
    assert policy.pause() == 0.0
    clock.now = 106.0
    intake.busy_seconds, intake.last_commit_at = 1.0, 106.0  # commits again
    few()  # careful until measured: saturated
    clock.now = intake.last_commit_at = 106.6
    intake.busy_seconds = 1.55  # writing 90% of the last 0.6 s
    assert few() == 1
    assert policy.saturated
    assert policy.pause() == SATURATED_PAUSE_SECONDS


def test_without_a_shared_write_lock_batches_stay_large_and_only_gathering_rests() -> None:
    # PostgreSQL: intake's commits do not wait for the stages' transactions, so however busy
    # its writer is, the pipeline neither shrinks its batches nor rests after each round.
    intake = _Signal()
    clock = _Clock(100.0)
    policy = BatchPolicy(cast(IntakeSignal, intake), clock=clock, shared_write_lock=False)
    few = policy.stage(lambda size: 1)
    full = policy.stage(lambda size: size)
    intake.last_commit_at = 100.0
    assert policy.size(now=100.1) == BATCH_IDLE  # just started: no careful small batches
    clock.now = intake.last_commit_at = 100.7
    intake.busy_seconds = 0.6  # writing nearly all the time
    assert few() == 1
    assert not policy.saturated
    assert policy.size() == BATCH_IDLE
    policy.pause()
    # A round that took few orders while messages arrive: the rest of the gather interval.
    clock.now = intake.last_commit_at = 100.8
    assert few() == 1
    assert policy.pause() == pytest.approx(GATHER_SECONDS - 0.1)
    # A full batch: the next round at once.
    clock.now = intake.last_commit_at = 101.5
    assert full() == BATCH_IDLE
    assert policy.pause() == 0.0


def test_wake_ends_an_idle_wait_at_once() -> None:
    rounds: list[float] = []

    def deliver() -> int:
        rounds.append(time.monotonic())
        return 0

    workers = BackgroundWorkers(idle_sleep=60)
    workers.register("deliver", deliver)
    workers.start()
    try:
        deadline = time.monotonic() + 5
        while not rounds and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(rounds) == 1  # asked once, then waiting up to idle_sleep
        time.sleep(0.05)
        woken = time.monotonic()
        workers.wake("deliver")
        while len(rounds) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(rounds) == 2
        assert rounds[1] - woken < 2.0  # not the 60 s of idle_sleep
    finally:
        started = time.monotonic()
        workers.stop()
    assert time.monotonic() - started < 2.0  # a stop ends the idle wait too


def _report_signal(shared: object, pipe: Connection) -> None:
    intake = IntakeSignal(shared)
    pipe.send((intake.last_commit_at, intake.busy_seconds, intake.waiting_since))


def test_the_intake_signal_reaches_a_spawned_process() -> None:
    context = multiprocessing.get_context("spawn")
    intake = IntakeSignal.create(context)
    intake.committed(12.5, 3.25)
    intake.locked_out(13.0)
    intake.locked_out(13.5)  # still waiting: the first refusal's time is kept
    here, there = context.Pipe()
    child = context.Process(target=_report_signal, args=(intake.shared, there))
    child.start()
    try:
        assert here.poll(60)
        assert here.recv() == (12.5, 3.25, 13.0)
    finally:
        child.join(30)


class _FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1


def test_a_worker_transaction_waits_while_intake_waits_for_the_lock() -> None:
    signal = IntakeSignal([0.0, 0.0, 0.0])
    clock = _FakeClock()
    assert yield_to_intake(signal, clock, clock.sleep) == 0.0  # intake is not waiting
    assert clock.sleeps == 0

    signal.locked_out(99.9)
    real_sleep = clock.sleep

    def commit_after_three(seconds: float) -> None:
        real_sleep(seconds)
        if clock.sleeps == 3:
            signal.committed(clock.now, 1.0)  # intake got the lock and committed

    waited = yield_to_intake(signal, clock, commit_after_three)
    assert clock.sleeps == 3
    assert waited == pytest.approx(3 * YIELD_POLL_SECONDS)
    assert signal.waiting_since == 0.0


def test_a_worker_does_not_wait_for_ever_on_intake() -> None:
    """Intake stuck elsewhere (its thread busy, a crash): the worker goes on after
    YIELD_SECONDS."""
    signal = IntakeSignal([0.0, 0.0, 0.0])
    signal.locked_out(1.0)
    clock = _FakeClock()
    waited = yield_to_intake(signal, clock, clock.sleep)
    assert YIELD_SECONDS <= waited < YIELD_SECONDS + 2 * YIELD_POLL_SECONDS


def test_an_idle_pipeline_is_woken_when_intake_commits_not_at_its_next_poll() -> None:
    intake = _Signal()
    rounds: list[float] = []

    def stage() -> int:
        rounds.append(time.monotonic())
        return 0

    workers = BackgroundWorkers(idle_sleep=60)  # only a wake-up starts a round
    workers.register_chain("pipeline", [("stage", stage)])
    watch = IntakeWatch(cast(IntakeSignal, intake), lambda: workers.wake("pipeline"), every=0.01)
    workers.start()
    watch.start()
    try:
        deadline = time.monotonic() + 5
        while not rounds and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert len(rounds) == 1  # the first round, then nothing: no commit yet
        committed = time.monotonic()
        intake.last_commit_at = committed
        while len(rounds) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(rounds) == 2
        assert rounds[1] - committed < 1.0  # against the 60 s poll
        time.sleep(0.2)
        assert len(rounds) == 2  # one wake-up per commit
    finally:
        watch.stop()
        workers.stop()
