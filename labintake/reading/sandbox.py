"""A process of its own that reads one stored message at a time, and can be abandoned.

The worker's threads share one interpreter lock, and a thread cannot be stopped from outside:
a read that runs away (a reader bug on some message nobody foresaw, a message that takes all
the memory) would hold up reading, verification and release together. Here the read runs in
a spawned child process; the caller waits for the answer on a pipe (holding no lock meanwhile)
at most `timeout` seconds, and past that the child is killed and a new one started for the
next message. A child that dies (killed, out of memory) is noticed the same way.

`read_batch` reads a batch of messages in the child, each within the budget: the child
sends each message's plan as soon as it is read, so a batch whose k-th message does not
come back gives the plans of the messages before it and the reason for the k-th. (Sending
the plans together would lose that; each plan crosses the pipe as compact tuples instead,
see `MessagePlan.__reduce__` and `OrderRows.__reduce__`.)
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from labintake import heap
from labintake.childproc import ChildProcess, ChildStartError
from labintake.errors import LabintakeError
from labintake.hl7.limits import ReadingLimits
from labintake.reading.rows import ColumnLimits, model_column_limits

log = logging.getLogger(__name__)

# Spawning the child and importing the reader, on a loaded 2-core machine: not part of any
# message's time budget.
STARTUP_SECONDS = 60.0
# An idle child asked to exit: past this it is killed.
STOP_SECONDS = 5.0


class SandboxError(LabintakeError):
    """The read did not come back: `reason` says why (time budget, the process ended)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What reading one message needs from its row (picklable for the child)."""

    message_id: int
    raw: bytes | None
    charset: str
    sending_application: str
    sending_facility: str

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as a plain tuple (a slotted dataclass pickles through a state dict built
        field by field): a batch of them goes to the child on every round."""
        return (
            StoredMessage,
            (
                self.message_id,
                self.raw,
                self.charset,
                self.sending_application,
                self.sending_facility,
            ),
        )


def _child(
    interfaces_dir: Path,
    limits: ReadingLimits,
    columns: ColumnLimits,
    read: Callable[..., Any] | None,
    pipe: Connection,
) -> None:
    from labintake.interfaces import load_interfaces
    from labintake.reading.plan import plan_message

    read = read or plan_message
    registry = load_interfaces(interfaces_dir)
    heap.settle()
    pipe.send("ready")
    while True:
        try:
            asked: StoredMessage | list[StoredMessage] | None = pipe.recv()
        except EOFError:
            return
        if asked is None:
            return
        for message in asked if isinstance(asked, list) else [asked]:
            pipe.send(
                read(
                    message.message_id,
                    message.raw,
                    message.charset,
                    message.sending_application,
                    message.sending_facility,
                    registry,
                    limits,
                    columns,
                )
            )


class ReadingSandbox:
    """Reads messages in a child process, each within a time budget."""

    def __init__(
        self,
        interfaces_dir: Path,
        limits: ReadingLimits,
        read: Callable[..., Any] | None = None,
    ) -> None:
        """`read`: `plan_message` unless given (a module-level function, for the child),
        called with `plan_message`'s arguments, the column limits last."""
        self.interfaces_dir = interfaces_dir
        self.limits = limits
        self.read_function = read
        # Read here, where the models are loaded, so that the child need not load them.
        self.columns = model_column_limits()
        self._child = ChildProcess("labintake-reader", daemon=True)
        self._ready = False
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def start(self) -> None:
        """Start the child (not waiting for it): the first read waits for it to be ready."""
        if self._child.started:
            return
        self._child.spawn(
            _child, self.interfaces_dir, self.limits, self.columns, self.read_function
        )
        self._ready = False

    def read(self, message: StoredMessage, timeout: float) -> Any:
        """The message's `MessagePlan`; SandboxError when it is not back within `timeout`."""
        pipe = self._ready_pipe()
        started = time.monotonic()
        try:
            pipe.send(message)
            if not pipe.poll(timeout):
                elapsed = time.monotonic() - started
                self._abandon()
                raise SandboxError(
                    f"reading took longer than {timeout:g} s (stopped after {elapsed:.1f} s; "
                    "LABINTAKE_READ_TIMEOUT_SECONDS)"
                )
            return pipe.recv()
        except (EOFError, OSError) as exc:
            code = self._child.exitcode
            self._abandon()
            raise SandboxError(
                f"the reading process ended while reading (exit code {code})"
            ) from exc

    def read_batch(
        self, messages: list[StoredMessage], timeout: float, setting: str = "READ_TIMEOUT_SECONDS"
    ) -> tuple[list[Any], SandboxError | None]:
        """The plans of `messages` in order, each read within `timeout` seconds. When one is
        not back in time (or the child dies), the plans read before it and the reason: the
        messages after it are not read."""
        if not messages:
            return [], None
        if self._child.started and not self._child.is_alive():
            self._abandon()  # died while idle: no message of this batch is to blame
        pipe = self._ready_pipe()
        plans: list[Any] = []
        try:
            pipe.send(messages)
            for _ in messages:
                started = time.monotonic()
                if not pipe.poll(timeout):
                    elapsed = time.monotonic() - started
                    self._abandon()
                    return plans, SandboxError(
                        f"reading took longer than {timeout:g} s (stopped after "
                        f"{elapsed:.1f} s; LABINTAKE_{setting})"
                    )
                plans.append(pipe.recv())
        except (EOFError, OSError):
            code = self._child.exitcode
            self._abandon()
            return plans, SandboxError(
                f"the reading process ended while reading (exit code {code})"
            )
        return plans, None

    def _ready_pipe(self) -> Connection:
        """The pipe to a started child that said it is ready (SandboxError when it does not
        within STARTUP_SECONDS: it is killed)."""
        self.start()
        if not self._ready:
            with contextlib.suppress(ChildStartError):
                self._ready = self._child.wait_ready(STARTUP_SECONDS) == "ready"
            if not self._ready:
                self._abandon()
                raise SandboxError("the reading process did not start")
        assert self._child.pipe is not None
        return self._child.pipe

    def _abandon(self) -> None:
        """Kill the child (its read is given up) and forget it; the next read starts anew."""
        if self._child.started:
            self.restarts += 1
        self._child.kill()
        self._ready = False

    def stop(self) -> None:
        """Ask the child to exit; kill it when it has not within a few seconds."""
        self._child.stop(STOP_SECONDS, request=None)
        self._ready = False
