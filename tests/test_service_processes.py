"""`labintake serve` as three processes: the listener, the web app and the workers.

The web app runs apart from the listener; a child that ends unexpectedly is logged and
started again on the same port while messages keep being acknowledged; one that keeps
crashing stops the service with status 1; SIGTERM, SIGINT or a kill of the service process
ends every child.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from mllp_messages import msa, orm

from benchmarks import servers
from benchmarks.servers import ServerProcess, process_tree
from labintake.errors import ConfigurationError
from labintake.mllp.client import MLLPClient
from labintake.supervisor import Supervisor
from labintake.web.process import bind_web_socket

_WEB = re.compile(r"web screen and API on http://[^:]+:(\d+)/ \(process (\d+)\)")
_WEB_AGAIN = re.compile(r"the web process runs again \(pid (\d+)\)")
_WORKERS = re.compile(r"background workers: .* \(process (\d+)\)")


def _wait(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


class Running:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server

    @property
    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")

    @property
    def web(self) -> tuple[int, int]:
        log = self.log
        found = _WEB.findall(log)
        assert found, self.server.log_tail()
        port, pid = found[-1]
        again = _WEB_AGAIN.findall(log)
        return int(port), int(again[-1] if again else pid)

    def ready(self) -> Running:
        """Once the log names both child processes: the listener answers before they have
        all said so, and a loaded machine shows the gap."""
        started = _wait(lambda: bool(_WEB.search(self.log) and _WORKERS.search(self.log)), 60)
        assert started, self.server.log_tail()
        return self

    @property
    def workers_pid(self) -> int:
        found = _WORKERS.search(self.log)
        assert found, self.server.log_tail()
        return int(found.group(1))

    def healthz(self) -> int:
        port, _ = self.web
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
        except httpx.HTTPError:
            return 0

    def ack(self, control_id: str) -> str:
        async def send() -> str:
            assert self.server.port is not None
            async with MLLPClient("127.0.0.1", self.server.port, timeout=10) as client:
                return msa(await client.send(orm(control_id).encode()))[1]

        return asyncio.run(send())


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[Running]:
    server = servers.labintake(database_url, tmp_path)
    server.start(timeout=120)
    try:
        yield Running(server).ready()
    finally:
        server.stop()


def test_the_web_app_runs_in_a_process_of_its_own_beside_the_listener(service: Running) -> None:
    _port, web_pid = service.web
    assert web_pid not in (service.server.pid, service.workers_pid)
    assert set(process_tree(service.server.pid)) >= {web_pid, service.workers_pid}
    assert service.healthz() == 200
    assert service.ack("PROC1") == "AA"


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_web_process_runs_its_configured_niceness_below_the_listener(
    database_url: str, tmp_path: Path
) -> None:
    server = servers.labintake(database_url, tmp_path, extra_env={"LABINTAKE_WEB_NICENESS": "12"})
    server.start(timeout=120)
    try:
        running = Running(server).ready()
        _port, web_pid = running.web
        listener = _niceness(server.pid)
        assert _niceness(web_pid) == min(19, listener + 12)
        assert _niceness(running.workers_pid) == min(19, listener + 10)
        assert running.healthz() == 200
    finally:
        server.stop()


def test_a_crashed_web_process_is_logged_and_started_again_on_the_same_port(
    service: Running,
) -> None:
    port, web_pid = service.web
    os.kill(web_pid, signal.SIGKILL)
    assert service.ack("PROC2") == "AA"  # the listener did not notice
    assert _wait(lambda: service.web[1] != web_pid and service.healthz() == 200)
    assert service.web[0] == port
    assert "the web process (pid" in service.log
    assert "ended unexpectedly with exit code -9; starting it again" in service.log
    assert service.ack("PROC3") == "AA"


def test_a_crashed_worker_process_is_started_again(service: Running) -> None:
    workers = service.workers_pid
    os.kill(workers, signal.SIGKILL)
    assert _wait(lambda: "the worker process runs again" in service.log)
    assert service.ack("PROC4") == "AA"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_service_and_every_child(
    service: Running, sig: signal.Signals
) -> None:
    children = [pid for pid in process_tree(service.server.pid) if pid != service.server.pid]
    assert len(children) >= 2
    process = service.server.process
    assert process is not None
    process.send_signal(sig)
    assert process.wait(60) == 0
    assert _wait(lambda: not any(_alive(pid) for pid in children), 10)


def test_killing_the_service_process_alone_ends_its_children(service: Running) -> None:
    children = [pid for pid in process_tree(service.server.pid) if pid != service.server.pid]
    process = service.server.process
    assert process is not None
    process.kill()  # SIGKILL to the service alone, not its process group
    process.wait(10)
    assert _wait(lambda: not any(_alive(pid) for pid in children), 15)


class _CrashingChild:
    """A child that ends as soon as it is started."""

    name = "flaky"
    pid = 4242

    def __init__(self, fails_to_start: bool = False) -> None:
        self.starts = 0
        self.fails_to_start = fails_to_start

    @property
    def exitcode(self) -> int | None:
        return 1

    def start(self) -> None:
        if self.fails_to_start:
            raise ConfigurationError("port taken")
        self.starts += 1

    def stop(self) -> None:
        pass


def test_a_child_that_keeps_crashing_stops_the_service() -> None:
    child = _CrashingChild()
    supervisor = Supervisor([child], restarts_allowed=3, window_seconds=60, interval=0.01)
    stop = asyncio.Event()

    async def watch() -> None:
        await asyncio.wait_for(supervisor.watch(stop), 10)

    asyncio.run(watch())
    assert child.starts == 3
    assert supervisor.restarts == {"flaky": 3}
    assert "ended 4 times within 60 s" in supervisor.failure


def test_a_child_that_cannot_be_started_again_stops_the_service() -> None:
    supervisor = Supervisor([_CrashingChild(fails_to_start=True)], interval=0.01)

    async def watch() -> None:
        await asyncio.wait_for(supervisor.watch(asyncio.Event()), 10)

    asyncio.run(watch())
    assert "could not be started again: port taken" in supervisor.failure


def test_a_taken_web_port_is_a_clear_configuration_error() -> None:
    taken = bind_web_socket("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_web_socket("127.0.0.1", port)
    finally:
        taken.close()
