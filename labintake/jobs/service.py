"""Release, delivery and scheduled jobs inside `labintake serve`.

Delivery and the release of verified orders run as continuous background workers (they
have work most of the time); the periodic jobs run on the APScheduler job store. Under
`--demo` with no LIS configured, a stub LIS is started so orders visibly arrive somewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.jobs.scheduler import JobService, deliver, run_job
from labintake.release.stub_lis import StubLis

log = logging.getLogger(__name__)


class WorkerRegistry(Protocol):
    def register(self, name: str, function: Callable[[], int]) -> None: ...


def start_demo_lis(settings: Settings) -> tuple[StubLis, Settings]:
    """A stub LIS on LIS_PORT (any free port when that one is taken); settings pointing at it."""
    try:
        stub = StubLis("127.0.0.1", settings.lis_port, log_messages=True).start()
    except OSError:
        stub = StubLis("127.0.0.1", 0, log_messages=True).start()
    log.info(
        f"demo: no LABINTAKE_LIS_HOST set; stub LIS receiving released orders on "
        f"127.0.0.1:{stub.port}"
    )
    return stub, settings.model_copy(update={"lis_host": "127.0.0.1", "lis_port": stub.port})


class ReleaseRuntime:
    """The release side of one service instance."""

    def __init__(self, settings: Settings, engine: Engine, *, demo: bool = False) -> None:
        self.stub_lis: StubLis | None = None
        if demo and not settings.lis_host:
            self.stub_lis, settings = start_demo_lis(settings)
        elif not settings.lis_host:
            log.warning("LABINTAKE_LIS_HOST is not set: released orders wait in the outbox")
        self.settings = settings
        self.jobs = JobService(settings, engine, batch_jobs=False)

    def register(self, workers: WorkerRegistry) -> None:
        context = self.jobs.context
        workers.register("release", lambda: run_job("release_verified", context) or 0)
        workers.register("deliver", lambda: deliver(context))

    def start(self) -> None:
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.shutdown()
        if self.stub_lis is not None:
            self.stub_lis.stop()
