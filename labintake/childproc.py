"""A spawned child process and its pipe: start, the "ready" handshake, stop, kill.

`labintake serve` runs the web app and the background workers in children of their own, and
reading runs in a sandbox child that can be abandoned (:mod:`labintake.reading.sandbox`).
Each talks to its child over one pipe, and each needs the same steps done the same way:

- :meth:`ChildProcess.spawn`: start ``target(*args, pipe)`` with the "spawn" start method
  (a fresh interpreter: no threads, locks or connections inherited), and close the parent's
  copy of the child's end, so that the parent sees end-of-file when the child goes away;
- :meth:`ChildProcess.wait_ready`: the child's first message within a start-up deadline
  (:class:`ChildStartError` when none comes, or the child ends first);
- :meth:`ChildProcess.stop`: ask politely (a message on the pipe), wait, then terminate
  and/or kill what is still alive, and close the pipe; :meth:`ChildProcess.kill` when the
  child's work is given up at once.

:class:`InChildProcess` is a part of `labintake serve` in such a child (the web app, the
background workers): its pid and exit code for the supervisor, and its start-up answer made a
ConfigurationError when it is not "ready".

On the child's side, :func:`wait_for_stop_request` blocks until the parent asks it to stop,
closes its end, or goes away (an orphaned child must not run on by itself).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from labintake.errors import ConfigurationError

__all__ = [
    "ChildProcess",
    "ChildStartError",
    "InChildProcess",
    "spawn_context",
    "wait_for_stop_request",
]

# How often a child checks that its parent is still there.
PARENT_CHECK_SECONDS = 1.0
# How long a terminated or killed child is waited for before it is given up.
REAP_SECONDS = 5.0


def spawn_context() -> SpawnContext:
    """The start method of every labintake child process."""
    return multiprocessing.get_context("spawn")


class ChildStartError(Exception):
    """The child sent nothing in time (`ended` False), or ended before it did (`ended` True)."""

    def __init__(self, ended: bool) -> None:
        super().__init__("the child process ended" if ended else "the child process is late")
        self.ended = ended


class ChildProcess:
    """One spawned child and the parent's end of the pipe to it."""

    def __init__(
        self, name: str, *, daemon: bool = False, context: SpawnContext | None = None
    ) -> None:
        """`name`: the process name (shown by ps); `daemon`: killed when the parent exits."""
        self.name = name
        self.daemon = daemon
        self.context = context or spawn_context()
        self.process: BaseProcess | None = None
        self.pipe: Connection | None = None

    @property
    def started(self) -> bool:
        """A child was spawned and not stopped or killed since (it may have ended)."""
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def exitcode(self) -> int | None:
        """None while the child runs (or was not started); its exit code once it ended."""
        return self.process.exitcode if self.process is not None else None

    def is_alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def spawn(self, target: Callable[..., object], *args: Any) -> Connection:
        """Start ``target(*args, pipe)`` in a child; the parent's end of the pipe."""
        parent_end, child_end = self.context.Pipe()
        self.process = self.context.Process(
            target=target, args=(*args, child_end), name=self.name, daemon=self.daemon
        )
        self.process.start()
        child_end.close()
        self.pipe = parent_end
        return parent_end

    def wait_ready(self, timeout: float) -> Any:
        """The child's first message (that it is ready, or why it is not), within `timeout`
        seconds. ChildStartError when none comes in time or the child ends first: the caller
        decides how to stop it (:meth:`stop` or :meth:`kill`)."""
        assert self.pipe is not None, "spawn first"
        try:
            if not self.pipe.poll(timeout):
                raise ChildStartError(ended=False)
            return self.pipe.recv()
        except (EOFError, OSError) as exc:
            raise ChildStartError(ended=True) from exc

    def stop(
        self,
        timeout: float,
        *,
        request: object = "stop",
        late: tuple[logging.Logger, str] | None = None,
        kill: bool = True,
    ) -> None:
        """Send `request` and wait `timeout` seconds for the child to exit. Still running:
        with `late`, log its warning and terminate (SIGTERM: the child's own shutdown);
        then, with `kill`, kill what is still alive. The pipe is closed in any case."""
        if self.process is None:
            self._forget()
            return
        if self.pipe is not None:
            with contextlib.suppress(OSError):  # the child may be gone
                self.pipe.send(request)
        self.process.join(timeout)
        if late is not None and self.process.is_alive():
            logger, warning = late
            logger.warning(warning)
            self.process.terminate()
            self.process.join(REAP_SECONDS)
        if kill:
            self.kill()  # a child that has ended is not signalled
        else:
            self._forget()

    def kill(self) -> None:
        """Kill the child at once (its work is given up) and forget it."""
        if self.process is not None:
            self.process.kill()
            self.process.join(REAP_SECONDS)
        self._forget()

    def _forget(self) -> None:
        self.process = None
        if self.pipe is not None:
            self.pipe.close()
        self.pipe = None


class InChildProcess:
    """A part of `labintake serve` that runs in a child process of its own (`_child`), which
    answers its start with ``("ready", detail)``, ``("configuration", problem)`` or
    ``("error", problem)``."""

    _child: ChildProcess

    def stop(self) -> None:
        raise NotImplementedError

    def _wait_started(self, timeout: float, *, late: str, ended: str, refused: str) -> Any:
        """The `detail` of the child's "ready". Otherwise the child is stopped and
        ConfigurationError raised: `late` (nothing in time), `ended` (it ended first), the
        problem itself (a setting), or `refused` and the problem (any other error)."""
        try:
            kind, detail = self._child.wait_ready(timeout)
        except ChildStartError as exc:
            self.stop()
            if exc.ended:
                raise ConfigurationError(ended) from exc
            raise ConfigurationError(late) from None
        if kind == "ready":
            return detail
        self.stop()
        if kind == "configuration":
            raise ConfigurationError(detail)
        raise ConfigurationError(f"{refused}: {detail}")

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def exitcode(self) -> int | None:
        """None while the child runs (or was not started); its exit code once it ended."""
        return self._child.exitcode


def wait_for_stop_request(
    pipe: Connection,
    parent: int,
    *,
    running: Callable[[], bool],
    orphaned: tuple[logging.Logger, str],
) -> None:
    """In the child: return when the parent sends a message (its stop request), closes its
    end of the pipe, or goes away (`orphaned` logged), or when `running()` turns false."""
    try:
        while running():
            if pipe.poll(PARENT_CHECK_SECONDS):
                pipe.recv()
                return
            if os.getppid() != parent:
                logger, warning = orphaned
                logger.warning(warning)
                return
    except (EOFError, OSError):  # the parent closed its end: stop as well
        pass
