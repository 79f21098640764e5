"""Servers under load as real subprocesses: labintake (`labintake serve`) and the peers.

Each server runs in its own process with its output in a log file, is ready once its MLLP
port accepts a connection, and can be stopped politely (SIGTERM) or killed (SIGKILL). Memory
comes from ``/proc``: the peak resident set (``VmHWM``) of the process and its children.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

# How each server says where it listens: the peers print ``listening HOST PORT``; the
# service logs ``listening for HL7 (MLLP) on HOST:PORT``.
_LISTENING = (
    re.compile(r"^listening \S+ (\d+)$"),
    re.compile(r"listening for HL7 \([^)]*\) on \S+:(\d+)"),
)


class ServerFailed(RuntimeError):
    """A server did not come up, or died; the message carries the tail of its log."""


def _status_kib(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants still alive."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def peak_rss_bytes(pid: int) -> int:
    """Peak resident memory of `pid` and its live children (sum of each one's VmHWM)."""
    return sum(_status_kib(p, "VmHWM") for p in process_tree(pid)) * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by `pid` and its live children, in seconds."""
    return sum(cpu_seconds_of(member) for member in process_tree(pid))


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU time used so far by `pid` alone (0 once it is gone), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def cpu_by_role(pid: int) -> dict[str, float]:
    """CPU seconds so far of `labintake serve` (at `pid`) and its live children, by role.

    The roles come from the process tree and each child's nice value, which `labintake
    serve` raises: the listener is `pid`; of its children the web app runs at 5 above the
    listener's nice value, the worker process at 10 above, and the one at the listener's
    priority is multiprocessing's resource tracker; the worker's children are the reading
    sandboxes.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    roles: dict[str, float] = {}

    def add(role: str, member: int) -> None:
        fields = _stat_fields(member)
        if fields:
            roles[role] = roles.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks

    add("listener", pid)
    own = _stat_fields(pid)
    base = int(own[16]) if own else 0  # the listener's own nice value: the children add to it
    for child in _children(pid):
        fields = _stat_fields(child)
        nice = int(fields[16]) - base if fields else 0
        role = {5: "web", 10: "worker"}.get(nice, "resource tracker")
        add(role, child)
        for grandchild in process_tree(child)[1:]:
            add("reading sandbox" if role == "worker" else f"{role} child", grandchild)
    return roles


def rss_bytes_of(pid: int) -> int:
    """Current resident memory of `pid` alone."""
    return _status_kib(pid, "VmRSS") * 1024


def rss_bytes(pid: int) -> int:
    """Current resident memory of `pid` and its live children."""
    return sum(_status_kib(p, "VmRSS") for p in process_tree(pid)) * 1024


class MemorySampler:
    """Samples the resident memory of a process tree in a thread; keeps the largest total.

    The sum of each process's own peak (`peak_rss_bytes`) overstates the peak of the whole
    when its processes peak at different moments; this is the peak of the sum, as sampled.
    """

    def __init__(self, server: ServerProcess, interval: float = 0.2) -> None:
        self.server = server
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def sample(self) -> None:
        process = self.server.process
        if process is not None and process.poll() is None:
            self.peak_bytes = max(self.peak_bytes, rss_bytes(process.pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class ServerProcess:
    """One server subprocess listening for MLLP on a loopback port.

    It runs in a session (and process group) of its own, so that pausing or killing it
    reaches any worker processes it starts.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.port = port
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerFailed(f"{self.name} is not running")
        return self.process.pid

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerFailed(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.port is None:
                self.port = self._port_from_log()
            if self.port is not None and self._accepts():
                return
            time.sleep(0.05)
        raise ServerFailed(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def _port_from_log(self) -> int | None:
        """The port the server reports it bound (it was started on port 0)."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            for pattern in _LISTENING:
                found = pattern.search(line)
                if found:
                    return int(found.group(1))
        return None

    def _accepts(self) -> bool:
        assert self.port is not None
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds so far by role, for `labintake serve` (see :func:`cpu_by_role`)."""
        return cpu_by_role(self.pid)

    def _signal_group(self, sig: signal.Signals) -> None:
        """Signal the server and every process it started (its own process group)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def pause(self) -> None:
        """SIGSTOP: the server and its children take no CPU until resumed."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL to the server and its children, no goodbye: a crash or the OOM killer."""
        if self.process is not None and self.process.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL when it does not stop in time. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.resume()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def peer(module: str, log_path: Path) -> ServerProcess:
    """A peer from `benchmarks.peers`, on a port of its own choosing."""
    argv = [sys.executable, "-m", f"benchmarks.peers.{module}", "--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return ServerProcess(module, argv, log_path, env=env, cwd=REPO)


def labintake_env(database_url: str, mllp_port: int = 0, web_port: int = 0) -> dict[str, str]:
    """The environment `labintake serve` runs with: given database, loopback ports, dev mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABINTAKE_")}
    env.update(
        LABINTAKE_DEVELOPMENT="1",
        LABINTAKE_DATABASE_URL=database_url,
        LABINTAKE_MLLP_HOST=LOOPBACK,
        LABINTAKE_MLLP_PORT=str(mllp_port),
        LABINTAKE_WEB_HOST=LOOPBACK,
        LABINTAKE_WEB_PORT=str(web_port),
        LABINTAKE_INTERFACES_DIR=str(REPO / "interfaces"),
        LABINTAKE_CODE_TABLES_DIR=str(REPO / "code_tables"),
        # The load generator is one address standing for many senders (up to 64 connections).
        LABINTAKE_MAX_CONNECTIONS_PER_PEER="200",
    )
    return env


def labintake(
    database_url: str,
    workdir: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """`labintake serve` on `database_url`, run from `workdir` (its log goes there too).

    Both ports are 0: the service binds what the kernel gives and logs the MLLP port.
    """
    env = labintake_env(database_url)
    env.update(extra_env or {})
    argv = [sys.executable, "-m", "labintake", "serve"]
    workdir.mkdir(parents=True, exist_ok=True)
    return ServerProcess("labintake", argv, workdir / "labintake.log", env=env, cwd=workdir)


def labintake_listener(database_url: str, workdir: Path) -> ServerProcess:
    """labintake's MLLP listener and intake store alone (`benchmarks.listener`), no workers."""
    env = labintake_env(database_url)
    env["PYTHONPATH"] = str(REPO)
    argv = [sys.executable, "-m", "benchmarks.listener"]
    workdir.mkdir(parents=True, exist_ok=True)
    return ServerProcess("listener", argv, workdir / "listener.log", env=env, cwd=workdir)
