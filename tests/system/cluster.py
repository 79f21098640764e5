"""A private PostgreSQL cluster for fault tests: its own data folder, port and socket folder.

Restarting the shared PostgreSQL at 127.0.0.1:5432 would disturb every other test running at
the same time, so the tests that restart or stop PostgreSQL start one of these with Debian's
`initdb` and `pg_ctl` (run as the `postgres` user when the tests run as root, since PostgreSQL
refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import text

from labintake.db import make_engine

LOOPBACK = "127.0.0.1"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server binaries folder, if any."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    for folder in reversed(candidates):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def unavailable_reason() -> str | None:
    """Why a private cluster cannot be started here (None when it can)."""
    if postgres_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root without runuser"
    return None


class PrivateCluster:
    """initdb + pg_ctl in a fresh temporary folder; `url` reaches it over TCP.

    The folder is made under the system temporary folder (not a test's private one) because
    the server runs as the `postgres` user, who must be able to reach it.
    """

    def __init__(self) -> None:
        folder = postgres_bin()
        if folder is None:
            raise RuntimeError("PostgreSQL server binaries not found")
        self.bin = folder
        self.root = Path(tempfile.mkdtemp(prefix="labintake-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgresql.log"
        self.port = free_port()

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> PrivateCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses={LOOPBACK} "
            "-c max_connections=200 -c fsync=on"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (disconnect clients) or `immediate` (like a crash)."""
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
            check=False,
        )  # fmt: skip

    def is_running(self) -> bool:
        result = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return result.returncode == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        admin = make_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)

    def remove(self) -> None:
        """Stop the server (if running) and delete its folder."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
