"""Checks `labintake serve` makes before it takes any message: each failure is one line that
names the setting to change and what was found, and the service does not start.

A service that starts without its code tables or sender definitions would acknowledge every
message while verification failed on each one; one that cannot bind a port would sit there
half started. Better to stop at once and say which setting to fix.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from labintake.config import Settings
from labintake.errors import ConfigurationError

_WHY = {
    errno.EADDRINUSE: "the address is already in use (another program listens there)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "this machine has no such address",
}


def bind_error(setting: str, host: str, port: int, exc: OSError) -> ConfigurationError:
    """The one-line error for a port that cannot be listened on."""
    why = _WHY.get(exc.errno or 0, exc.strerror or str(exc))
    return ConfigurationError(
        f"cannot listen on {host}:{port}: {why}; set {setting} to a free port "
        f"(or stop what holds it)"
    )


def check_port(setting: str, host: str, port: int) -> None:
    """ConfigurationError when `host:port` cannot be bound right now (the servers bind with
    SO_REUSEADDR, so the check does too)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        host_setting = setting.replace("_PORT", "_HOST")
        raise ConfigurationError(f"{host_setting}: cannot resolve {host!r}: {exc}") from None
    for family, kind, proto, _, address in infos[:1]:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise bind_error(setting, host, port, exc) from None


def check_folder(setting: str, folder: Path, what: str) -> None:
    if not folder.is_dir():
        where = (
            folder if folder.is_absolute() else f"{folder.resolve()} ({folder} from {Path.cwd()})"
        )
        raise ConfigurationError(
            f"{setting}: no {what} folder at {where}; set {setting} to its path "
            "(relative paths start from the directory labintake is started in)"
        )


def check_service(settings: Settings) -> None:
    """Everything `labintake serve` needs before it starts, cheapest first."""
    check_folder("LABINTAKE_INTERFACES_DIR", settings.interfaces_dir, "sender definitions")
    check_folder("LABINTAKE_CODE_TABLES_DIR", settings.code_tables_dir, "code tables")
    check_port("LABINTAKE_MLLP_PORT", settings.mllp_host, settings.mllp_port)
    check_port("LABINTAKE_WEB_PORT", settings.web_host, settings.web_port)


def check_code_tables(settings: Settings) -> None:
    """Load and verify the code tables (what verification will use); ConfigurationError
    naming the setting and the path when they are missing or invalid."""
    from labintake.codes.tables import get_code_tables
    from labintake.errors import CodeTableError

    try:
        get_code_tables(settings)
    except CodeTableError as exc:
        raise ConfigurationError(
            f"LABINTAKE_CODE_TABLES_DIR ({settings.code_tables_dir.resolve()}): the code tables "
            f"cannot be used: {exc}"
        ) from None


def check_interfaces(settings: Settings) -> None:
    """ConfigurationError naming the setting when a sender definition is invalid."""
    from labintake.interfaces import load_interfaces

    try:
        load_interfaces(settings.interfaces_dir)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"LABINTAKE_INTERFACES_DIR ({settings.interfaces_dir.resolve()}): {exc}"
        ) from None
