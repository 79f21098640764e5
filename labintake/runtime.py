"""`labintake serve`: the MLLP listener and the web app in one process, the workers beside it.

The listener and the web app share one asyncio loop (the web app is a uvicorn server in that
loop); the intake writer commits from a thread of its own. Reading, verification, release and
delivery run in a child process (:mod:`labintake.background`), so their CPU-heavy Python never
holds this process's interpreter lock while an ACK is due. SIGTERM or SIGINT shut down in
order: stop accepting MLLP connections and answer the messages already read, finish the
commits in flight, stop the web app, let the workers finish their batches, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn
from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url

from labintake.background import BackgroundWorkers, WorkerProcess
from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.errors import ConfigurationError
from labintake.intake import Intake
from labintake.interfaces import load_interfaces
from labintake.logs import configure_logging, redact_url
from labintake.mllp.server import MLLPServer, server_tls_context
from labintake.preflight import bind_error, check_interfaces, check_service

log = logging.getLogger("labintake.runtime")

__all__ = ["BackgroundWorkers", "Service", "WorkerProcess", "run_service", "serve"]

# While a worker thread runs Python, a thread coming back from the database or the network
# waits up to this long for the interpreter lock (5 ms by default): short, for the ACK path.
SWITCH_INTERVAL_SECONDS = 0.0005


class _EmbeddedUvicorn(uvicorn.Server):
    """Uvicorn in our loop; signals are ours to handle, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
        self.intake = Intake(settings, self.engine, interfaces=self.interfaces)
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
        self.web: uvicorn.Server | None = None
        self._web_task: asyncio.Task[Any] | None = None

    @property
    def mllp_port(self) -> int:
        return self.mllp.bound_port

    @property
    def web_port(self) -> int:
        if self.web is None or not self.web.servers:
            return self.settings.web_port
        return int(self.web.servers[0].sockets[0].getsockname()[1])

    async def start(self) -> None:
        check_schema(self.engine)
        # Workers first: when they cannot start, no message has been taken yet.
        await asyncio.to_thread(self.workers.start)
        self.intake.start()
        from labintake.web.app import create_app

        config = uvicorn.Config(
            create_app(self.settings, self.engine),
            host=self.settings.web_host,
            port=self.settings.web_port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        self.web = _EmbeddedUvicorn(config)
        self._web_task = asyncio.create_task(self._serve_web(self.web), name="web")
        while not self.web.started:
            if self._web_task.done():
                await self._web_task  # raises what stopped it
                raise ConfigurationError("the web app stopped during startup")
            await asyncio.sleep(0.01)
        # The listener last: once it takes messages, nothing else holds up the loop.
        try:
            await self.mllp.start()
        except OSError as exc:
            settings = self.settings
            port = settings.mllp_port
            raise bind_error("LABINTAKE_MLLP_PORT", settings.mllp_host, port, exc) from None
        self._log_started()

    async def _serve_web(self, web: uvicorn.Server) -> None:
        try:
            await web.serve()
        except SystemExit:  # uvicorn logs a bind error and exits: one line naming the setting
            settings = self.settings
            raise ConfigurationError(
                f"cannot listen on {settings.web_host}:{settings.web_port} (see the line "
                "above); set LABINTAKE_WEB_PORT to a free port (or stop what holds it)"
            ) from None

    async def stop(self) -> None:
        log.info("shutting down: no new MLLP connections, finishing messages in flight")
        await self.mllp.stop()
        await asyncio.to_thread(self.intake.close)
        if self.web is not None and self._web_task is not None:
            self.web.should_exit = True
            # A web app that could not start has said so; the workers must still be stopped
            # below, or the process would wait for them forever.
            with contextlib.suppress(ConfigurationError):
                await self._web_task
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
        log.info(f"web screen and API on http://{settings.web_host}:{self.web_port}/")
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
        self._log_code_tables()

    def _log_code_tables(self) -> None:
        """Load the code tables once here too, so an out-of-date ICD-10-CM release is in the
        startup log (see `labintake.codes.tables.log_icd10_status`), not only the workers'."""
        from labintake.codes.tables import get_code_tables
        from labintake.errors import CodeTableError

        try:
            get_code_tables(self.settings)
        except CodeTableError as exc:
            log.error(f"code tables cannot be loaded: {exc}")


async def serve(settings: Settings, *, demo: bool = False) -> None:
    """Run until SIGTERM or SIGINT, then shut down in order.

    The worker process is spawned: a script calling this must guard its entry point with
    ``if __name__ == "__main__":`` (as multiprocessing requires).
    """
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = Service(settings, demo=demo)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    await stop.wait()
    await service.stop()


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
        asyncio.run(serve(settings, demo=demo))
    except ConfigurationError as exc:
        log.error(str(exc))
        raise SystemExit(2) from exc
