"""`labintake serve`: the MLLP listener, the web app and the background workers in one process.

Everything runs in one asyncio loop (the web app is a uvicorn server in that loop) except
database work: the intake writer has its own thread, and each background worker runs its
batch function in a thread of its own. SIGTERM or SIGINT shut down in order: stop accepting
MLLP connections and answer the messages already read, finish the commits in flight, stop the
web app and the workers, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url

from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.errors import ConfigurationError
from labintake.intake import Intake
from labintake.interfaces import InterfaceRegistry, load_interfaces
from labintake.logs import configure_logging, redact_url
from labintake.mllp.server import MLLPServer, server_tls_context

log = logging.getLogger("labintake.runtime")

BatchFunction = Callable[[], int]


@dataclass(slots=True)
class _Worker:
    name: str
    function: BatchFunction
    thread: threading.Thread | None = None
    processed: int = 0
    failures: int = 0


@dataclass(slots=True)
class BackgroundWorkers:
    """Runs registered batch functions, each in its own thread, until stopped.

    A batch function processes one batch and returns how many items it handled; when it
    handles none, its thread sleeps `idle_sleep` seconds before asking again. An exception is
    logged and the function is retried after `error_sleep` seconds.
    """

    idle_sleep: float = 0.5
    error_sleep: float = 5.0
    _workers: list[_Worker] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def register(self, name: str, function: BatchFunction) -> None:
        if any(worker.name == name for worker in self._workers):
            raise ConfigurationError(f"background worker {name!r} registered twice")
        self._workers.append(_Worker(name, function))

    @property
    def names(self) -> list[str]:
        return [worker.name for worker in self._workers]

    def processed(self, name: str) -> int:
        return next(w.processed for w in self._workers if w.name == name)

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
            if worker.thread is not None:
                worker.thread.join(timeout)
                if worker.thread.is_alive():
                    log.warning("worker still busy at shutdown", extra={"worker": worker.name})
                worker.thread = None

    def _run(self, worker: _Worker) -> None:
        while not self._stop.is_set():
            try:
                count = worker.function()
            except Exception:
                worker.failures += 1
                log.exception("background worker failed; retrying", extra={"worker": worker.name})
                self._stop.wait(self.error_sleep)
                continue
            worker.processed += count
            if count == 0:
                self._stop.wait(self.idle_sleep)


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


# Reading batches while messages arrive are kept small: on SQLite a batch holds the one write
# lock while it is written, and intake must not wait long for it. With no intake going on,
# large batches drain a backlog fastest.
READER_BATCH_WHILE_INTAKE = 25
READER_BATCH_IDLE = 500


def _reader_function(engine: Engine, registry: InterfaceRegistry, intake: Intake) -> BatchFunction:
    from labintake.reading.worker import read_pending

    def read_batch() -> int:
        limit = READER_BATCH_WHILE_INTAKE if intake.busy() else READER_BATCH_IDLE
        return read_pending(engine, registry, limit)

    return read_batch


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
            ssl_context=tls,
        )
        self.workers = BackgroundWorkers()
        self.workers.register("reader", _reader_function(self.engine, self.interfaces, self.intake))
        from labintake.verification.service import pending_verifier

        self.workers.register("verifier", pending_verifier(settings, self.engine, self.interfaces))
        from labintake.jobs.service import ReleaseRuntime

        self.release = ReleaseRuntime(settings, self.engine, demo=demo)
        self.release.register(self.workers)
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
        self.intake.start()
        await self.mllp.start()
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
        self._web_task = asyncio.create_task(self.web.serve(), name="web")
        while not self.web.started:
            if self._web_task.done():
                await self._web_task  # raises what stopped it
                raise ConfigurationError("the web app stopped during startup")
            await asyncio.sleep(0.01)
        self.workers.start()
        self.release.start()
        self._log_started()

    async def stop(self) -> None:
        log.info("shutting down: no new MLLP connections, finishing messages in flight")
        await self.mllp.stop()
        await asyncio.to_thread(self.intake.close)
        if self.web is not None and self._web_task is not None:
            self.web.should_exit = True
            await self._web_task
        await asyncio.to_thread(self.release.stop)
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
        log.info(f"background workers: {', '.join(self.workers.names) or 'none'}")


async def serve(settings: Settings, *, demo: bool = False) -> None:
    """Run until SIGTERM or SIGINT, then shut down in order."""
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
    if demo:
        migrate(settings.database_url)
        _demo_users(settings)
    try:
        asyncio.run(serve(settings, demo=demo))
    except ConfigurationError as exc:
        log.error(str(exc))
        raise SystemExit(2) from exc
