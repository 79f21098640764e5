"""Background work: batch functions run in threads, in a process of their own.

Reading, verification, release and delivery are batch functions (``Callable[[], int]``: do
one batch, say how many items it handled). :class:`BackgroundWorkers` runs them in threads
that ask again at once while there is work and sleep briefly when there is none.

`labintake serve` runs them in a child process (:class:`WorkerProcess`), not next to the
MLLP listener: they are CPU-heavy Python (reading parses, verification checks, release builds
outbound messages), and sharing the listener's interpreter lock would put their time on the
ACK path. Intake comes first in four ways:

- reading, verification and release run one after the other in one thread (the pipeline).
  Threads of one process share one interpreter lock, so parallel stages gained no CPU; they
  only made each stage's write transaction wait for the lock while the others computed, and
  on SQLite the intake writer waited behind those stretched transactions. One at a time,
  each write transaction is as short as its statements;
- the child lowers its own CPU priority (:data:`WORKER_NICENESS`), so the listener gets the
  processor when both want it, and the workers take the rest;
- the intake writer tells the child, in shared memory, when it last committed and how long
  it has been writing; batches shrink while messages arrive, and shrink further while intake
  is saturated (:mod:`labintake.batching`), so the SQLite write lock is never held long when
  an ACK waits for it;
- on SQLite, when the intake writer finds the database locked it says so in the same shared
  memory, and each transaction of the child waits until intake has committed
  (:func:`labintake.batching.yield_to_intake`), so an ACK waits for the one transaction under
  way, not for several in a row.

Delivery waits on the network, not the CPU, and keeps a thread of its own. An idle pipeline
polls every 0.5 s, and is woken sooner when intake commits
(:class:`labintake.batching.IntakeWatch`, which reads the same shared memory), so an order
on a quiet service is not kept waiting for the poll. The child reports its workers' names
when they run, and stops when the parent asks or goes away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Engine

from labintake import heap
from labintake.batching import (
    BatchFunction,
    BatchPolicy,
    IntakeSignal,
    IntakeWatch,
    yield_to_intake,
)
from labintake.childproc import (
    ChildProcess,
    InChildProcess,
    wait_for_stop_request,
)
from labintake.config import Settings
from labintake.errors import ConfigurationError

log = logging.getLogger("labintake.background")

# The worker process's nice value: below the listener, which keeps the default priority.
WORKER_NICENESS = 10
STARTUP_TIMEOUT_SECONDS = 120.0
# How long a stop waits for the current batches before the child is terminated.
STOP_TIMEOUT_SECONDS = 60.0


@dataclass(slots=True)
class _Stage:
    name: str
    function: BatchFunction
    processed: int = 0
    failures: int = 0
    retry_at: float = 0.0  # time.monotonic() before which a failed stage is not asked again


@dataclass(slots=True)
class _Worker:
    name: str
    stages: list[_Stage]
    thread: threading.Thread | None = None
    pause: Callable[[], float] | None = None  # seconds to rest after a round that did work
    # Set to end an idle wait early: new work, or a stop.
    wakeup: threading.Event = field(default_factory=threading.Event)


@dataclass(slots=True)
class BackgroundWorkers:
    """Runs registered batch functions in threads until stopped.

    A batch function processes one batch and returns how many items it handled. A worker is
    one thread running one function, or a chain of them in turn (:meth:`register_chain`);
    when a round handles nothing, the thread sleeps `idle_sleep` seconds before asking again,
    or less when :meth:`wake` tells it that work came.
    An exception is logged, and that function alone is skipped for `error_sleep` seconds.
    """

    idle_sleep: float = 0.5
    error_sleep: float = 5.0
    # Where failures and recoveries are recorded for /healthz and /metrics (StageHealth).
    health: StageReport | None = None
    _workers: list[_Worker] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def register(self, name: str, function: BatchFunction) -> None:
        self.register_chain(name, [(name, function)])

    def register_chain(
        self,
        name: str,
        stages: Sequence[tuple[str, BatchFunction]],
        *,
        pause: Callable[[], float] | None = None,
    ) -> None:
        """One thread running `stages` one batch each, in order, round after round; after a
        round that did work it rests `pause()` seconds when given (0: none)."""
        taken = {worker.name for worker in self._workers} | set(self.names)
        for stage_name in {name, *(stage for stage, _ in stages)}:
            if stage_name in taken:
                raise ConfigurationError(f"background worker {stage_name!r} registered twice")
        self._workers.append(_Worker(name, [_Stage(n, f) for n, f in stages], pause=pause))

    @property
    def names(self) -> list[str]:
        """Every batch function's name, in order."""
        return [stage.name for worker in self._workers for stage in worker.stages]

    def describe(self) -> str:
        """The threads and what each runs: ``pipeline (reader -> verifier), deliver``."""
        return ", ".join(
            worker.name
            if [s.name for s in worker.stages] == [worker.name]
            else f"{worker.name} ({' -> '.join(s.name for s in worker.stages)})"
            for worker in self._workers
        )

    def wake(self, name: str) -> None:
        """Tell the worker `name` that work came: an idle wait ends at once (a round running
        now is followed by another at once)."""
        for worker in self._workers:
            if worker.name == name:
                worker.wakeup.set()

    def processed(self, name: str) -> int:
        return next(s.processed for w in self._workers for s in w.stages if s.name == name)

    def failures(self, name: str) -> int:
        return next(s.failures for w in self._workers for s in w.stages if s.name == name)

    def start(self) -> None:
        self._stop.clear()
        for worker in self._workers:
            if worker.thread is None:
                worker.thread = threading.Thread(
                    target=self._run, args=(worker,), name=f"worker-{worker.name}", daemon=True
                )
                worker.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every worker to stop after its current batch, and wait for them (blocking)."""
        self._stop.set()
        for worker in self._workers:
            worker.wakeup.set()
        for worker in self._workers:
            if worker.thread is not None:
                worker.thread.join(timeout)
                if worker.thread.is_alive():
                    log.warning("worker still busy at shutdown", extra={"worker": worker.name})
                worker.thread = None

    def _run(self, worker: _Worker) -> None:
        while not self._stop.is_set():
            worker.wakeup.clear()  # what this round does answers every wake-up before it
            handled = 0
            for stage in worker.stages:
                if self._stop.is_set():
                    return
                if stage.retry_at > time.monotonic():
                    continue
                try:
                    count = stage.function()
                except Exception as exc:
                    stage.failures += 1
                    stage.retry_at = time.monotonic() + self.error_sleep
                    log.exception(
                        "background worker failed; retrying", extra={"worker": stage.name}
                    )
                    if self.health is not None:
                        self.health.failed(stage.name, exc)
                    continue
                if self.health is not None:
                    self.health.succeeded(stage.name)
                stage.processed += count
                handled += count
            if handled == 0:
                worker.wakeup.wait(self.idle_sleep)
            elif worker.pause is not None and (rest := worker.pause()) > 0:
                self._stop.wait(rest)


class StageReport(Protocol):
    def failed(self, stage: str, exc: BaseException) -> None: ...

    def succeeded(self, stage: str) -> None: ...


class Stoppable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def register_workers(
    settings: Settings,
    engine: Engine,
    workers: BackgroundWorkers,
    intake: IntakeSignal,
    *,
    demo: bool = False,
) -> list[Stoppable]:
    """Register every background worker of `labintake serve`; returns what else must run."""
    from labintake.intake.journal import IntakeJournal, journal_in_use
    from labintake.interfaces import load_interfaces
    from labintake.jobs.service import ReleaseRuntime
    from labintake.preflight import check_code_tables
    from labintake.reading.isolation import IsolatedReader
    from labintake.reading.plan import reading_limits
    from labintake.reading.sandbox import ReadingSandbox
    from labintake.reading.worker import BatchReading, read_pending
    from labintake.verification.aside import MessagesAside
    from labintake.verification.service import pending_verifier

    check_code_tables(settings)  # refuse to start rather than fail every verification
    interfaces = load_interfaces(settings.interfaces_dir)
    limits = reading_limits(settings)
    largest = settings.isolated_read_bytes

    # Every message is read within the time budget, in a process of its own: the batch in
    # one, the large and the failed ones in another (docs/limits.md).
    batch_sandbox = ReadingSandbox(settings.interfaces_dir, limits)
    reading = BatchReading(interfaces, limits, batch_sandbox, settings.batch_read_timeout_seconds)
    policy = BatchPolicy(intake, shared_write_lock=engine.dialect.name == "sqlite")
    if engine.dialect.name == "sqlite":  # every transaction of this process lets intake first
        event.listen(engine, "begin", lambda _connection: yield_to_intake(intake))
    # The large messages the isolated reader reads, it verifies too; the pipeline passes them
    # by (labintake.verification.aside).
    aside = MessagesAside()
    verify = pending_verifier(settings, engine, interfaces, aside=aside)
    release = ReleaseRuntime(settings, engine, demo=demo)

    def verify_aside_and_wake_release(message_id: int) -> int:
        verified = verify.message(message_id)
        if verified:
            workers.wake("pipeline")  # its release stage takes them: no need to poll for it
        return verified

    def release_and_wake_delivery(size: int) -> int:
        released = release.release_batch(size)
        if released:
            workers.wake("deliver")  # what was released is due now: no need to poll for it
        return released

    # With intake's journal, messages are moved into the database first (labintake.intake.journal).
    journal = IntakeJournal.beside(engine) if journal_in_use(settings, engine) else None
    moving = [] if journal is None else [("intake-journal", journal.move)]
    workers.register_chain(
        "pipeline",
        [
            *moving,
            (
                "reader",
                policy.stage(
                    lambda size: read_pending(
                        engine, interfaces, size, largest=largest, reading=reading
                    )
                ),
            ),
            ("verifier", policy.stage(verify)),
            ("release", policy.stage(release_and_wake_delivery)),
        ],
        pause=policy.pause,
    )
    # Delivery waits on the LIS's network replies, not on this process's CPU: its own thread.
    workers.register("deliver", release.deliver)
    # Large messages and those whose reading failed: one at a time, in a process of their own
    # within a time budget, in a thread that waits for it and then verifies the orders read
    # (docs/limits.md).
    isolated = IsolatedReader(
        engine,
        ReadingSandbox(settings.interfaces_dir, limits),
        largest=largest,
        budget_seconds=settings.read_timeout_seconds,
        attempts=settings.read_attempts,
        verify=verify_aside_and_wake_release,
        aside=aside,
    )
    workers.register("isolated-reader", isolated.read_next)
    # New orders wake the pipeline rather than wait for its poll.
    watch = IntakeWatch(intake, lambda: workers.wake("pipeline"))
    heap.settle()  # what the workers keep is loaded: out of the collector's way
    return [release, isolated, batch_sandbox, watch]


def _child_main(settings: Settings, demo: bool, intake: Any, parent: int, pipe: Connection) -> None:
    """The worker process: run the workers until told to stop or orphaned."""
    from labintake.db import make_engine
    from labintake.logs import configure_logging

    configure_logging(settings)
    stop = threading.Event()
    # Ctrl+C reaches the whole process group: the parent decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(OSError):  # a platform without nice: same priority as intake
        os.nice(WORKER_NICENESS)
    from labintake.stage_health import StageHealth

    engine = make_engine(settings.database_url)
    workers = BackgroundWorkers(health=StageHealth(engine))
    extras: list[Stoppable] = []
    try:
        extras = register_workers(settings, engine, workers, IntakeSignal(intake), demo=demo)
        workers.start()
        for extra in extras:
            extra.start()
    except ConfigurationError as exc:  # one line, logged by the parent
        pipe.send(("configuration", str(exc)))
        return
    except Exception as exc:
        log.exception("background workers could not start")
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    pipe.send(("ready", (workers.names, workers.describe())))
    wait_for_stop_request(
        pipe,
        parent,
        running=lambda: not stop.is_set(),
        orphaned=(log, "labintake serve went away; background workers stop"),
    )
    for extra in extras:
        extra.stop()
    workers.stop()
    engine.dispose()


class WorkerProcess(InChildProcess):
    """The background workers of `labintake serve`, in a spawned child process."""

    name = "worker"

    def __init__(self, settings: Settings, *, demo: bool = False) -> None:
        self.settings = settings
        self.demo = demo
        self._child = ChildProcess("labintake-workers")
        self.intake_signal = IntakeSignal.create(self._child.context)
        self.names: list[str] = []
        self.description = ""  # the child's threads and what each runs

    def start(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Start the child and wait until its workers run (blocking)."""
        self._child.spawn(
            _child_main, self.settings, self.demo, self.intake_signal.shared, os.getpid()
        )
        names, self.description = self._wait_started(
            timeout,
            late="background workers did not start in time",
            ended="background worker process ended during startup",
            refused="background workers could not start",
        )
        self.names = list(names)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Ask the child to finish its current batches and exit; wait for it (blocking), then
        terminate it. It is not killed: on SIGTERM it still stops its workers, whose last
        transactions may take longer."""
        self._child.stop(
            timeout,
            late=(log, "background workers did not stop in time; terminating them"),
            kill=False,
        )
