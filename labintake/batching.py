"""How the worker process sizes its batches from what intake is doing.

The listener's intake writer tells the worker process, in shared memory, when it last
committed and how long it has been writing (:class:`IntakeSignal`). :class:`BatchPolicy` turns
that into the size of the next batch and the rest after a round: on SQLite, where the
stages' write transactions hold the one write lock every ACK's commit needs, batches shrink
while messages arrive and further while intake is saturated; on PostgreSQL they stay large.
:class:`IntakeWatch` wakes an idle pipeline when intake commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BatchFunction = Callable[[], int]

# Batch sizes (messages or orders per batch; each batch is written WRITE_CHUNK at a time, see
# labintake.db). On SQLite every write transaction holds the one write lock, and intake must
# not wait long for it; small batches cost more per message, though. So: large with no intake
# going on (a backlog drains fastest), medium while messages arrive, small while intake is
# saturated (its writer busy for SATURATED_LOAD of the time or more: the ACK latency is at
# stake). See BatchPolicy. On a 2-core machine with SQLite, the writer was busy about 60% of
# the time at a steady 450 msg/s (its commits wait for the disk and for the workers'
# transactions) and 85-90% under a closed-loop load of 4 connections.
BATCH_IDLE = 500
BATCH_WHILE_INTAKE = 50
BATCH_SATURATED = 10
# On PostgreSQL nothing of intake's waits behind the stages' write transactions (row locks,
# no lock on the whole database): the batch is BATCH_IDLE whatever intake does, and there is
# no saturated mode. Sized as for SQLite, a server whose intake writer is busy most of the
# time (each group commit a round trip and a WAL flush) put the pipeline in batches of 10
# with a rest after each: at 800 orders/s offered it processed about 180 a second while the
# load lasted (docs/benchmarks.md).
INTAKE_BUSY_SECONDS = 0.5
SATURATED_LOAD = 0.75
# While intake is saturated the pipeline rests this long after each round: its write
# transactions, however small, are what an ACK waits behind. What it leaves is done as soon
# as intake eases.
SATURATED_PAUSE_SECONDS = 0.1
# While messages arrive and the pipeline keeps up with them (no stage took a full batch),
# a round starts at most this long after the previous one began, so each round takes what
# arrived meanwhile in one batch. Each round of the three stages costs a few dozen statements
# and transactions whatever its size: rounds of a few orders, one after the other, cost
# several times the CPU per order of rounds of fifty (a steady 100 orders/s: 0.2 s cut the
# worker's CPU per order by about a sixth, 0.5 s by a quarter to a third). A full batch means a
# backlog: the next round starts at once. The price: up to this much more from AA to
# delivered while the pipeline keeps up.
GATHER_SECONDS = 0.5
LOAD_SAMPLE_SECONDS = 0.5
# How often the worker process looks whether intake has committed (IntakeWatch).
INTAKE_WATCH_SECONDS = 0.05


class IntakeSignal:
    """What the listener's intake writer tells the worker process, in shared memory: when it
    last committed (``time.monotonic()``, the same clock in both processes), how many
    seconds it has spent writing in all, and since when it has been waiting for SQLite's
    write lock (0: it is not)."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared  # multiprocessing Array("d", 3): picklable to a spawned child

    @classmethod
    def create(cls, context: Any) -> IntakeSignal:
        return cls(context.Array("d", 3, lock=False))

    def committed(self, at: float, busy_seconds: float) -> None:
        self.shared[1] = busy_seconds
        self.shared[0] = at
        self.shared[2] = 0.0

    def locked_out(self, at: float) -> None:
        """Intake found the database locked (by a worker's write transaction) at `at`."""
        if self.shared[2] == 0.0:
            self.shared[2] = at

    @property
    def waiting_since(self) -> float:
        return float(self.shared[2])

    @property
    def last_commit_at(self) -> float:
        return float(self.shared[0])

    @property
    def busy_seconds(self) -> float:
        return float(self.shared[1])


class IntakeWatch:
    """Wakes the pipeline when intake commits, so that an order stored while the pipeline is
    idle is read at once instead of at its next poll (`BackgroundWorkers.idle_sleep` in
    labintake.background, 0.5 s): a thread that reads intake's last commit time in shared
    memory every `every` seconds.
    While messages keep arriving, the pipeline is not idle and the wake-ups change nothing
    (its rest after a round, `BatchPolicy.pause`, is not cut short)."""

    def __init__(
        self, signal: IntakeSignal, wake: Callable[[], None], every: float = INTAKE_WATCH_SECONDS
    ) -> None:
        self.signal = signal
        self.wake = wake
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="worker-intake-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        seen = self.signal.last_commit_at
        while not self._stop.is_set():
            time.sleep(self.every)  # cheaper than Event.wait with a timeout
            at = self.signal.last_commit_at
            if at != seen:
                seen = at
                self.wake()


@dataclass(slots=True)
class BatchPolicy:
    """How large the next batch is, from what intake is doing (see BATCH_IDLE and the rest).

    Intake's load is the share of time its writer spent writing over the last sample
    (at least LOAD_SAMPLE_SECONDS): under a load that saturates it the writer hardly rests,
    while a steady load the service keeps up with leaves it mostly idle.
    """

    signal: IntakeSignal
    clock: Callable[[], float] = time.monotonic  # the signal's clock
    # Intake's commits wait for the stages' write transactions (SQLite's one write lock).
    shared_write_lock: bool = True
    _sampled_at: float = 0.0
    _busy_then: float = 0.0
    _size: int = BATCH_IDLE
    _round_started: float = 0.0
    _backlog: bool = False  # a stage of this round took a full batch
    _intake_active: bool = False

    @property
    def saturated(self) -> bool:
        return self._size == BATCH_SATURATED

    def stage(self, run: Callable[[int], int]) -> BatchFunction:
        """`run(size)` as a stage of the pipeline: its batch sized by this policy, and a full
        batch noted as a backlog (see :meth:`pause`)."""

        def batch() -> int:
            size = self.size()
            handled = run(size)
            if handled >= size:
                self._backlog = True
            return handled

        return batch

    def pause(self, now: float | None = None) -> float:
        """Seconds for the pipeline to rest after a round that did work: SATURATED_PAUSE_SECONDS
        while intake is saturated; while messages arrive and no stage took a full batch, what
        is left of GATHER_SECONDS since the round began; else none (a backlog, or intake idle:
        at once)."""
        now = self.clock() if now is None else now
        rest = 0.0
        if self.saturated:
            rest = SATURATED_PAUSE_SECONDS
        elif self._intake_active and not self._backlog:
            rest = max(0.0, GATHER_SECONDS - (now - self._round_started))
        self._backlog = False
        self._round_started = now + rest
        return rest

    def size(self, now: float | None = None) -> int:
        now = self.clock() if now is None else now
        self._intake_active = now - self.signal.last_commit_at < INTAKE_BUSY_SECONDS
        if not self._intake_active:
            self._size, self._sampled_at = BATCH_IDLE, 0.0
            return self._size
        if not self.shared_write_lock:
            self._size = BATCH_IDLE
            return self._size
        if self._sampled_at == 0.0:  # intake just started: careful until it is measured
            self._size, self._sampled_at, self._busy_then = (
                BATCH_SATURATED,
                now,
                self.signal.busy_seconds,
            )
        elif now - self._sampled_at >= LOAD_SAMPLE_SECONDS:
            busy = self.signal.busy_seconds
            load = (busy - self._busy_then) / (now - self._sampled_at)
            self._size = BATCH_SATURATED if load >= SATURATED_LOAD else BATCH_WHILE_INTAKE
            self._sampled_at, self._busy_then = now, busy
        return self._size


# The longest a worker's transaction waits for intake to take the write lock first: intake
# retries a locked database every half millisecond at most, so it has it within a
# millisecond or two; past this the worker goes on regardless (intake stuck elsewhere).
YIELD_SECONDS = 0.02
YIELD_POLL_SECONDS = 0.0002


def yield_to_intake(
    signal: IntakeSignal,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Before a worker's transaction on SQLite: while intake waits for the write lock, let it
    have it (seconds waited). Without this the stages' transactions, one right after the
    other, can each take the lock between two of intake's retries, and an ACK waits for
    several of them in a row instead of the one under way."""
    if signal.waiting_since == 0.0:
        return 0.0
    started = clock()
    while signal.waiting_since != 0.0 and clock() - started < YIELD_SECONDS:
        sleep(YIELD_POLL_SECONDS)
    return clock() - started
