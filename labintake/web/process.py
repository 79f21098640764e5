"""The web app's own process: `labintake serve` binds the web port and hands it to a child.

The web screen and API run apart from the MLLP listener, so what a web request costs (a
password hash takes 19 MiB and tens of milliseconds of CPU; a flood of sign-ins, as many as
it sends at once) comes out of this process's memory and CPU, not out of the ACK path. The
child runs at a lower CPU priority than the listener (`LABINTAKE_WEB_NICENESS`, 5 by
default; the background workers run at 10): when both want the processor, the listener
gets it. The niceness is relative to the service's own: run
`labintake serve` at -5 (systemd ``Nice=-5``), and the listener gets -5, the web app 0.

The parent binds the listening socket (so a taken port is reported at once, and the port
stays the same when the child is started again) and passes it to the spawned child
(:func:`run_web_process`), which serves it with uvicorn. The child reports "ready" once
uvicorn runs, and stops when the parent asks (a message on the pipe), on SIGTERM, or when
the parent goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection

import uvicorn

from labintake.childproc import (
    ChildProcess,
    InChildProcess,
    wait_for_stop_request,
)
from labintake.config import Settings
from labintake.errors import ConfigurationError
from labintake.preflight import bind_error

log = logging.getLogger("labintake.web")

__all__ = ["WebProcess", "run_web_process"]

STARTUP_TIMEOUT_SECONDS = 60.0
# How long a stop waits for running requests before the child is terminated.
STOP_TIMEOUT_SECONDS = 30.0
# Connections and requests uvicorn serves at once; beyond, it answers 503 at once.
MAX_CONCURRENT_REQUESTS = 200
# Requests still running this long after a stop is asked for are cut off.
GRACEFUL_SHUTDOWN_SECONDS = 10


class _ChildUvicorn(uvicorn.Server):
    """Uvicorn whose signals are the child's own handlers, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_web_socket(host: str, port: int) -> socket.socket:
    """The web app's listening socket (port 0: one the kernel picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise bind_error("LABINTAKE_WEB_PORT", host, port, exc) from exc
    sock.set_inheritable(True)
    return sock


def _watch_parent(server: uvicorn.Server, pipe: Connection, parent: int) -> None:
    """Ask uvicorn to exit when the parent says so, closes the pipe, or goes away."""
    wait_for_stop_request(
        pipe,
        parent,
        running=lambda: not server.should_exit,
        orphaned=(log, "labintake serve went away; the web app stops"),
    )
    server.should_exit = True


def run_web_process(settings: Settings, sock: socket.socket, parent: int, pipe: Connection) -> None:
    """The web process's entry point: serve `sock` until told to stop."""
    from labintake.db import make_engine
    from labintake.logs import configure_logging
    from labintake.web.app import create_app

    configure_logging(settings)
    # Ctrl+C reaches the whole process group: the parent decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(settings.web_niceness)
    engine = make_engine(settings.database_url)
    try:
        config = uvicorn.Config(
            create_app(settings, engine),
            log_config=None,
            access_log=False,
            lifespan="on",
            limit_concurrency=MAX_CONCURRENT_REQUESTS,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        server = _ChildUvicorn(config)
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
        asyncio.run(_serve(server, sock, pipe, parent))
    except Exception as exc:
        log.exception("the web app could not run")
        with contextlib.suppress(OSError):
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from exc
    finally:
        engine.dispose()


async def _serve(
    server: uvicorn.Server, sock: socket.socket, pipe: Connection, parent: int
) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task  # raises what stopped it
            raise ConfigurationError("the web app stopped during startup")
        await asyncio.sleep(0.01)
    pipe.send(("ready", os.getpid()))
    threading.Thread(
        target=_watch_parent, args=(server, pipe, parent), name="parent-watch", daemon=True
    ).start()
    await task


class WebProcess(InChildProcess):
    """The web app of `labintake serve`, in a spawned child serving the parent's socket."""

    name = "web"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._socket: socket.socket | None = None
        self._child = ChildProcess("labintake-web")

    @property
    def port(self) -> int:
        if self._socket is None:
            return self.settings.web_port
        return int(self._socket.getsockname()[1])

    def bind(self) -> None:
        """Take the web port now (ConfigurationError when it is taken)."""
        if self._socket is None:
            self._socket = bind_web_socket(self.settings.web_host, self.settings.web_port)

    def start(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Start the child and wait until it serves (blocking)."""
        self.bind()
        self._child.spawn(run_web_process, self.settings, self._socket, os.getpid())
        self._wait_started(
            timeout,
            late="the web app did not start in time",
            ended="the web process ended during startup",
            refused="the web app could not start",
        )

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Ask the child to finish its requests and exit; wait for it (blocking), then
        terminate it, then kill it."""
        self._child.stop(timeout, late=(log, "the web app did not stop in time; terminating it"))

    def close(self) -> None:
        """Stop the child and release the port."""
        self.stop()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
