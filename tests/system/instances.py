"""Several real `labintake serve` processes, a fresh PostgreSQL database, and HAProxy in front.

The balancer runs `docker/haproxy.cfg` itself, with the compose service names replaced by
the loopback ports the instances got, so the shipped configuration is what is exercised.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks import servers
from tests.system.cluster import free_port

REPO = Path(__file__).resolve().parents[2]
_WEB_PORT = re.compile(r"web screen and API on http://[^:]+:(\d+)/")


def web_port(server: servers.ServerProcess) -> int:
    found = _WEB_PORT.findall(server.log_path.read_text(errors="replace"))
    if not found:
        raise servers.ServerFailed(f"{server.name}: no web port in the log\n{server.log_tail()}")
    return int(found[-1])


def start_instances(
    count: int, database_url: str, workdir: Path, env: Mapping[str, str]
) -> list[servers.ServerProcess]:
    started: list[servers.ServerProcess] = []
    try:
        for number in range(1, count + 1):
            instance = servers.labintake(
                database_url, workdir / f"instance-{number}", extra_env=env
            )
            instance.name = f"labintake-{number}"
            started.append(instance.start())
    except BaseException:
        for instance in started:
            instance.kill()
        raise
    return started


def error_lines(instance: servers.ServerProcess) -> list[str]:
    """ERROR and CRITICAL log lines of an instance (its log is in plain format)."""
    text_ = instance.log_path.read_text(errors="replace")
    return [line for line in text_.splitlines() if " ERROR " in line or " CRITICAL " in line]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class Balancer:
    process: subprocess.Popen[bytes]
    mllp_port: int
    web_port: int
    config: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def haproxy_available() -> bool:
    return shutil.which("haproxy") is not None


def render_haproxy_config(instances: list[tuple[int, int]], mllp_port: int, web: int) -> str:
    """docker/haproxy.cfg with its servers at the loopback (mllp, web) port pairs given."""
    config = (REPO / "docker" / "haproxy.cfg").read_text()
    config = re.sub(r"\nresolvers docker\n(?:    .*\n)+", "\n", config)
    config = config.replace(" resolvers docker", "").replace("init-addr last,libc,none ", "")
    config = config.replace("    log stdout format raw local0\n", "")
    config = config.replace("bind :2575", f"bind 127.0.0.1:{mllp_port}")
    config = config.replace("bind :8000", f"bind 127.0.0.1:{web}")
    mllp_servers = "".join(
        f"    server labintake-{n} 127.0.0.1:{m} port {w}\n"
        for n, (m, w) in enumerate(instances, start=1)
    )
    web_servers = "".join(
        f"    server labintake-{n} 127.0.0.1:{w}\n" for n, (_m, w) in enumerate(instances, start=1)
    )
    config = re.sub(
        r"(    server labintake-\d+ labintake-\d+:2575 port 8000\n)+", mllp_servers, config
    )
    config = re.sub(r"(    server labintake-\d+ labintake-\d+:8000\n)+", web_servers, config)
    return config


def start_balancer(instances: list[tuple[int, int]], workdir: Path) -> Balancer:
    mllp, web = free_port(), free_port()
    path = workdir / "haproxy.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_haproxy_config(instances, mllp, web))
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise RuntimeError(f"haproxy rejected the configuration:\n{check.stdout}{check.stderr}")
    with (workdir / "haproxy.log").open("ab") as log:
        process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
    balancer = Balancer(process, mllp, web, path)
    if not wait_until(lambda: _accepts(mllp), 15, 0.1):
        balancer.stop()
        raise RuntimeError("haproxy did not start listening")
    return balancer


def _accepts(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False
