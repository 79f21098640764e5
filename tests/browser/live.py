"""The web app served by uvicorn on a free port, and headless Chromium: one way to start each,
for every browser test (the fixtures in `conftest.py` and the tests with their own data)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.web.app import create_app

CHROMIUM = "/usr/bin/chromium"


@contextmanager
def serve_web(settings: Settings, engine: Engine, start_seconds: float = 20) -> Iterator[str]:
    """The app over `engine` in a thread; yields its base URL, stops it on the way out."""
    # log_config=None and no log_level: uvicorn leaves the process's logging as it is (a level
    # set here would stay on its loggers for the tests that run after in the same worker).
    config = uvicorn.Config(
        create_app(settings, engine),
        host="127.0.0.1",
        port=0,
        log_config=None,
        log_level=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_seconds
    while not server.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless (the sandbox needs privileges a test run does not have)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        try:
            yield launched
        finally:
            launched.close()
