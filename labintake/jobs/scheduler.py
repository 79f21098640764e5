"""APScheduler 3 with a persistent SQLAlchemy job store in the service's own database.

Every instance starts a scheduler on the same job store; a job added with the same id
replaces the stored one, so instances agree on the schedule. Each run then takes the job's
lease (`labintake.jobs.lease`), so with several instances on one PostgreSQL a run happens
on one of them; the daily summary is further keyed by day in `job_run`.

Jobs are stored by reference (`labintake.jobs.scheduler:run_job` and the job's name), and
find the engine and settings of the process in `JobContext`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.jobs import tasks
from labintake.jobs.idempotency import purge_idempotency_keys
from labintake.jobs.lease import run_exclusive
from labintake.release.bulk import release_verified
from labintake.release.connection import Endpoint
from labintake.release.outbox import configure_release
from labintake.release.replies import enqueue_placer_replies, parse_address
from labintake.release.sender import (
    Sender,
    deliver_until_idle,
    endpoint_from_settings,
    policy_from_settings,
)

log = logging.getLogger(__name__)

# name -> (trigger, trigger arguments, lease seconds or None when claims already suffice)
SCHEDULE: dict[str, tuple[str, dict[str, int], float | None]] = {
    "deliver": ("interval", {"seconds": 2}, None),
    # Short: a killed holder would stall release for this long. A second instance starting a
    # run meanwhile is harmless (each order's release re-checks its row_version).
    "release_verified": ("interval", {"seconds": 5}, 60.0),
    "placer_replies": ("interval", {"seconds": 30}, 300.0),
    "follow_up_reminders": ("interval", {"minutes": 15}, 300.0),
    "escalate_old_holds": ("interval", {"hours": 1}, 300.0),
    "daily_summary": ("cron", {"minute": 5}, 300.0),  # hour set from settings
    "purge_raw_messages": ("cron", {"hour": 3, "minute": 30}, 1800.0),
    "purge_idempotency_keys": ("cron", {"hour": 3, "minute": 45}, 1800.0),
}


def instance_owner() -> str:
    """This process's name in leases and claims: hostname, pid and a random part.

    Hostname and pid alone repeat across containers: on the host network they share the
    hostname, and each has its own PID namespace (two instances' workers were both pid 8, and
    claimed and delivered each other's outbox rows). The hostname is cut so that the sender
    tokens built on this fit the 100-character owner and claim columns."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class JobContext:
    """What the jobs of this process work with."""

    engine: Engine
    settings: Settings
    owner: str = field(default_factory=instance_owner)
    senders: dict[str, Sender] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sender(self, destination: str) -> Sender | None:
        with self.lock:
            if destination in self.senders:
                return self.senders[destination]
            endpoint: Endpoint | None
            if destination == "lis":
                endpoint = endpoint_from_settings(self.settings)
            else:
                address = self.settings.placer_replies.get(destination)
                if address is None:
                    return None
                host, port = parse_address(address)
                endpoint = Endpoint(
                    host,
                    port,
                    connect_timeout=self.settings.lis_connect_timeout_seconds,
                    ack_timeout=self.settings.lis_ack_timeout_seconds,
                )
            if endpoint is None:
                return None
            sender = Sender(
                self.engine,
                endpoint,
                policy_from_settings(self.settings),
                destination=destination,
                name=f"{self.owner}:{destination}",
            )
            self.senders[destination] = sender
            return sender

    def close(self) -> None:
        with self.lock:
            for sender in self.senders.values():
                sender.close()
            self.senders.clear()


_context: JobContext | None = None


def set_context(context: JobContext | None) -> None:
    global _context
    _context = context


def deliver(context: JobContext) -> int:
    """Deliver what is due to the LIS and to every placer with replies configured."""
    handled = 0
    for destination in ["lis", *context.settings.placer_replies]:
        sender = context.sender(destination)
        if sender is not None:
            handled += deliver_until_idle(sender)
    return handled


def _work(name: str, context: JobContext) -> Callable[[], int]:
    engine, settings = context.engine, context.settings
    works: dict[str, Callable[[], int]] = {
        "deliver": lambda: deliver(context),
        "release_verified": lambda: release_verified(engine, limit=RELEASE_BATCH),
        "placer_replies": lambda: enqueue_placer_replies(
            engine, settings.placer_replies, settings.lis_sending_application
        ),
        "follow_up_reminders": lambda: tasks.follow_up_reminders(engine),
        "escalate_old_holds": lambda: tasks.escalate_old_holds(
            engine, settings.escalate_holds_after_hours
        ),
        "daily_summary": lambda: tasks.daily_summary(engine, context.owner),
        "purge_raw_messages": lambda: tasks.purge_raw_messages(engine, settings.raw_retention_days),
        "purge_idempotency_keys": lambda: purge_idempotency_keys(
            engine, settings.idempotency_key_retention_days
        ),
    }
    return works[name]


def run_job(name: str, context: JobContext | None = None) -> int | None:
    """One run of job `name` (under its lease when it has one); None when another instance
    holds the lease."""
    context = context or _context
    if context is None:
        log.warning("job %s skipped: no job context in this process", name)
        return None
    work = _work(name, context)
    lease = SCHEDULE[name][2]
    if lease is None:
        return work()
    ran, result = run_exclusive(context.engine, f"job:{name}", context.owner, work, lease)
    return result if ran else None


# Orders per release run: small enough that a run ends well inside its 60 s lease even on a
# busy machine, large enough that the set-based release amortises its queries.
RELEASE_BATCH = 500

# Jobs that may instead run as continuous background workers (see `labintake.jobs.service`).
BATCH_JOBS = frozenset({"deliver", "release_verified"})


def build_scheduler(context: JobContext, *, batch_jobs: bool = True) -> BackgroundScheduler:
    """A scheduler on the persistent job store with the jobs of SCHEDULE (not started);
    without `batch_jobs`, delivery and release are left to background workers."""
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=context.engine)},
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        timezone="UTC",
    )
    for name, (trigger, arguments, _lease) in SCHEDULE.items():
        if name in BATCH_JOBS and not batch_jobs:
            continue
        options = dict(arguments)
        if name == "daily_summary":
            options["hour"] = context.settings.daily_summary_hour_utc
        scheduler.add_job(
            "labintake.jobs.scheduler:run_job",
            trigger=trigger,
            args=[name],
            id=name,
            name=name,
            replace_existing=True,
            **options,
        )
    return scheduler


class JobService:
    """The scheduled jobs of one instance: start with `start()`, stop with `shutdown()`."""

    def __init__(self, settings: Settings, engine: Engine, *, batch_jobs: bool = True) -> None:
        configure_release(settings)
        self.batch_jobs = batch_jobs
        self.context = JobContext(engine=engine, settings=settings)
        self.scheduler = build_scheduler(self.context, batch_jobs=batch_jobs)

    def start(self) -> None:
        set_context(self.context)
        self.scheduler.start()
        if not self.batch_jobs:
            for name in BATCH_JOBS:
                if self.scheduler.get_job(name) is not None:
                    self.scheduler.remove_job(name)
        log.info("scheduled jobs started: %s", ", ".join(j.id for j in self.scheduler.get_jobs()))

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.context.close()
        set_context(None)
