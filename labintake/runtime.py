"""`labintake serve`: the MLLP listener in this process, the web app and the workers beside it.

Three processes. This one runs the MLLP listener (asyncio) and the intake writer (a thread
of its own) and nothing else, so that what the other two do never holds its interpreter
lock, its memory or its CPU while an ACK is due:

- the web app (screen and API, uvicorn) in a child of its own (:mod:`labintake.web.process`):
  a flood of sign-ins, each argon2 check 19 MiB and tens of milliseconds, costs that
  process, not the listener;
- reading, verification, release and delivery in another child (:mod:`labintake.background`).

Both children run at a lower CPU priority, are watched by a :class:`Supervisor` (a child that
ends unexpectedly is logged and started again; one that keeps crashing stops the service
with exit status 1), and end with the service. SIGTERM or SIGINT shut down in order: stop
accepting MLLP connections and answer the messages already read, finish the commits in
flight, stop the web app, let the workers finish their batches, then exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url

from labintake import heap
from labintake.background import BackgroundWorkers, WorkerProcess
from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.errors import ConfigurationError
from labintake.intake import Intake
from labintake.interfaces import load_interfaces
from labintake.logs import configure_logging, redact_url
from labintake.mllp.server import MLLPServer, server_tls_context
from labintake.preflight import bind_error, check_interfaces, check_service
from labintake.supervisor import Supervisor
from labintake.web.process import WebProcess

log = logging.getLogger("labintake.runtime")

__all__ = ["BackgroundWorkers", "Service", "WebProcess", "WorkerProcess", "run_service", "serve"]

# While a worker thread runs Python, a thread coming back from the database or the network
# waits up to this long for the interpreter lock (5 ms by default): short, for the ACK path.
SWITCH_INTERVAL_SECONDS = 0.0005


def describe_database(engine: Engine) -> str:
    url = make_url(str(engine.url))
    if engine.dialect.name == "sqlite":
        return f"SQLite file {url.database} (WAL, synchronous FULL)"
    return f"PostgreSQL {redact_url(url.render_as_string(hide_password=False))}"


def check_schema(engine: Engine) -> None:
    """Refuse to start on a database that was never migrated."""
    if not inspect(engine).has_table("inbound_message"):
        raise ConfigurationError(
            f"the database ({describe_database(engine)}) has no labintake schema; "
            "run `labintake migrate` first"
        )


class Service:
    """The running process: start it, then stop it (SIGTERM/SIGINT do that in `serve`)."""

    def __init__(self, settings: Settings, *, demo: bool = False) -> None:
        self.settings = settings
        self.demo = demo
        self.engine = make_engine(settings.database_url)
        self.interfaces = load_interfaces(settings.interfaces_dir)
        self.intake = Intake(settings, self.engine, interfaces=self.interfaces, journal=True)
        tls = (
            server_tls_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
            if settings.tls_cert is not None and settings.tls_key is not None
            else None
        )
        self.mllp = MLLPServer(
            self.intake,
            host=settings.mllp_host,
            port=settings.mllp_port,
            max_message_bytes=settings.max_message_bytes,
            idle_timeout=settings.idle_timeout_seconds,
            max_connections=settings.max_connections,
            max_connections_per_peer=settings.max_connections_per_peer,
            frame_timeout=settings.frame_timeout_seconds,
            ssl_context=tls,
        )
        self.workers = WorkerProcess(settings, demo=demo)
        self.intake.writer.on_commit = self.workers.intake_signal.committed
        self.intake.writer.on_locked = self.workers.intake_signal.locked_out
        self.web = WebProcess(settings)
        self.supervisor = Supervisor([self.web, self.workers])

    @property
    def mllp_port(self) -> int:
        return self.mllp.bound_port

    @property
    def web_port(self) -> int:
        return self.web.port

    async def start(self, *, before_listening: Callable[[], None] | None = None) -> None:
        """Start the children, then intake, then the listener. `before_listening` runs just
        before the listener takes messages (`serve` settles the process's heap there: done
        later it would stop the event loop while ACKs are due)."""
        check_schema(self.engine)
        # Intake's journal before the worker process, whose pipeline moves it.
        await asyncio.to_thread(self.intake.prepare)
        # The children first (side by side: each imports the package anew), so that when
        # one cannot start, no message has been taken yet.
        self.web.bind()
        await asyncio.gather(
            asyncio.to_thread(self.workers.start), asyncio.to_thread(self.web.start)
        )
        self.intake.start()
        if before_listening is not None:
            before_listening()
        # The listener last: once it takes messages, nothing else holds up the loop.
        try:
            await self.mllp.start()
        except OSError as exc:
            settings = self.settings
            port = settings.mllp_port
            raise bind_error("LABINTAKE_MLLP_PORT", settings.mllp_host, port, exc) from None
        self._log_started()

    async def stop(self) -> None:
        log.info("shutting down: no new MLLP connections, finishing messages in flight")
        await self.mllp.stop()
        await asyncio.to_thread(self.intake.close)
        await asyncio.to_thread(self.web.close)
        await asyncio.to_thread(self.workers.stop)
        self.engine.dispose()
        log.info("stopped", extra={"count": self.mllp.messages})

    def _log_started(self) -> None:
        settings = self.settings
        scheme = "MLLP over TLS" if self.mllp.ssl_context else "MLLP"
        client_certs = " (client certificates required)" if settings.tls_client_ca else ""
        log.info(f"listening for HL7 ({scheme}) on {settings.mllp_host}:{self.mllp_port}")
        if client_certs:
            log.info(f"MLLP TLS{client_certs}")
        log.info(
            f"web screen and API on http://{settings.web_host}:{self.web_port}/ "
            f"(process {self.web.pid})"
        )
        log.info(f"database: {describe_database(self.engine)}")
        names = ", ".join(sorted(i.name for i in self.interfaces)) or "none"
        log.info(
            f"interfaces loaded from {settings.interfaces_dir}: {len(self.interfaces)} ({names}); "
            f"sender allow-list {'on' if settings.enforce_sender_allowlist else 'off'}"
        )
        log.info(
            f"accepting {', '.join(settings.accepted_message_types)}; messages up to "
            f"{settings.max_message_bytes} bytes; at most {settings.max_connections} connections, "
            f"idle ones closed after {settings.idle_timeout_seconds:g} s"
        )
        log.info(
            f"background workers: {self.workers.description or 'none'} (process {self.workers.pid})"
        )
        # The code tables are not loaded here: the worker process loaded them before it said
        # it was ready (its start fails when they cannot be used), and logged an out-of-date
        # ICD-10-CM release then. Loaded here too, they cost this process 0.3-0.4 s on the
        # event loop just after the listener began taking messages, and about 44 MB.


async def serve(settings: Settings, *, demo: bool = False) -> int:
    """Run until SIGTERM or SIGINT, then shut down in order; the exit status (0, or 1 when a
    child process kept crashing).

    The web and worker processes are spawned: a script calling this must guard its entry
    point with ``if __name__ == "__main__":`` (as multiprocessing requires).
    """
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = Service(settings, demo=demo)
    try:
        # Everything the listener keeps is loaded before it takes messages: out of the
        # collector's sight, so that no full collection (tens of milliseconds over some
        # 90,000 objects) stops the event loop while ACKs are due. Here and not in
        # Service.start, like the switch interval: it is the process's, not a Service's.
        await service.start(before_listening=heap.settle)
    except BaseException:
        await service.stop()
        raise
    await service.supervisor.watch(stop)
    await service.stop()
    return 1 if service.supervisor.failure else 0


def _demo_users(settings: Settings) -> None:
    from labintake.auth.accounts import DEMO_PASSWORD, DEMO_USERS, ensure_demo_users
    from labintake.db import session_scope

    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            ensure_demo_users(session)
    finally:
        engine.dispose()
    names = ", ".join(name for name, _ in DEMO_USERS)
    log.warning("demo users %s, password %r (demo mode only)", names, DEMO_PASSWORD)


def run_service(settings: Settings, demo: bool = False) -> None:
    """`labintake serve`: configure logging, migrate in demo mode, run until a signal."""
    configure_logging(settings)
    try:
        check_service(settings)  # folders and ports: before anything starts
        check_interfaces(settings)
        if demo:
            migrate(settings.database_url)
            _demo_users(settings)
        status = asyncio.run(serve(settings, demo=demo))
    except ConfigurationError as exc:
        log.error(str(exc))
        raise SystemExit(2) from exc
    if status:
        raise SystemExit(status)
