"""Release, delivery and scheduled jobs inside `labintake serve`.

Release (`ReleaseRuntime.release_batch`) and delivery (`ReleaseRuntime.deliver`) run as
continuous background workers (they have work most of the time; see
`labintake.background`); the periodic jobs run on the APScheduler job store. Under
`--demo` with no LIS configured, a stub LIS is started so orders visibly arrive somewhere.
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.jobs.lease import HeldLease
from labintake.jobs.scheduler import RELEASE_BATCH, SCHEDULE, JobService, deliver
from labintake.release.bulk import has_verified, release_verified
from labintake.release.stub_lis import StubLis

log = logging.getLogger(__name__)


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
        context = self.jobs.context
        self._release_lease = HeldLease(
            engine, "job:release_verified", context.owner, SCHEDULE["release_verified"][2] or 60.0
        )

    def release_batch(self, limit: int = RELEASE_BATCH) -> int:
        """Release up to `limit` verified orders, under the release lease, held across batches
        while there is work (one instance releases at a time, so each patient's orders reach
        the outbox in order); returns how many were released."""
        engine = self.jobs.context.engine
        if not self._release_lease.held and not has_verified(engine):
            return 0  # nothing to release: no lease taken for it
        if not self._release_lease.hold():
            return 0
        released = release_verified(engine, limit=limit)
        if released == 0:
            self._release_lease.give_back()
        return released

    def deliver(self) -> int:
        """Deliver what is due to the LIS and the placers; returns how many were handled."""
        return deliver(self.jobs.context)

    def start(self) -> None:
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.shutdown()
        self._release_lease.give_back()
        if self.stub_lis is not None:
            self.stub_lis.stop()
