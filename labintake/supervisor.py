"""The child processes of `labintake serve`, watched: a crash is logged and the child restarted.

`labintake serve` runs the MLLP listener in its own process and starts two children: the web
app (:class:`labintake.web.process.WebProcess`) and the background workers
(:class:`labintake.background.WorkerProcess`). Both are stateless beyond the database: the
web app keeps its sessions there, the workers take their batches under database leases. So
when one exits without being asked to (a crash, the OOM killer, a kill -9), the
:class:`Supervisor` logs it at ERROR with its exit code and starts it again, while the
listener goes on taking messages. A child that keeps crashing (more than
RESTARTS_ALLOWED times within RESTART_WINDOW_SECONDS), or cannot be started again, is not
retried forever: the service stops in order and exits with status 1, for the process manager
(systemd, Docker's restart policy) to see and report.

The children stop with the service (SIGTERM or SIGINT to it), and stop on their own when the
service process goes away without telling them (kill -9): each checks for its parent every
second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Protocol

from labintake.errors import ConfigurationError

log = logging.getLogger("labintake.supervisor")

RESTARTS_ALLOWED = 3
RESTART_WINDOW_SECONDS = 300.0
WATCH_INTERVAL_SECONDS = 0.5


class ChildProcess(Protocol):
    """A child the supervisor can watch: started and stopped by the service (blocking calls)."""

    @property
    def name(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None:
        """None while running (or not started); the exit code once it ended."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Supervisor:
    """Watches children in the event loop; restarts one that ended, within limits."""

    def __init__(
        self,
        children: list[ChildProcess],
        *,
        restarts_allowed: int = RESTARTS_ALLOWED,
        window_seconds: float = RESTART_WINDOW_SECONDS,
        interval: float = WATCH_INTERVAL_SECONDS,
    ) -> None:
        self.children = children
        self.restarts_allowed = restarts_allowed
        self.window_seconds = window_seconds
        self.interval = interval
        self.restarts: dict[str, int] = {child.name: 0 for child in children}
        self.failure = ""  # why the service gave up, when it did
        self._crashes: dict[str, deque[float]] = {child.name: deque() for child in children}

    async def watch(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: restart a child that ended; set `stop` (and `failure`) when
        one keeps crashing or cannot be started again."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            if stop.is_set():
                return
            for child in self.children:
                code = child.exitcode
                if code is None:
                    continue
                if not await self._restart(child, code):
                    stop.set()
                    return

    async def _restart(self, child: ChildProcess, code: int) -> bool:
        now = time.monotonic()
        crashes = self._crashes[child.name]
        crashes.append(now)
        while crashes and now - crashes[0] > self.window_seconds:
            crashes.popleft()
        if len(crashes) > self.restarts_allowed:
            self.failure = (
                f"the {child.name} process ended {len(crashes)} times within "
                f"{self.window_seconds:g} s (last exit code {code}); stopping the service"
            )
            log.critical(self.failure)
            return False
        log.error(
            f"the {child.name} process (pid {child.pid}) ended unexpectedly with exit code "
            f"{code}; starting it again"
        )
        try:
            await asyncio.to_thread(child.stop)
            await asyncio.to_thread(child.start)
        except ConfigurationError as exc:
            self.failure = f"the {child.name} process could not be started again: {exc}"
            log.critical(self.failure)
            return False
        self.restarts[child.name] += 1
        log.warning(f"the {child.name} process runs again (pid {child.pid})")
        return True
