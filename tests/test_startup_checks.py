"""`labintake serve` refuses to start, at once and in one line naming the setting, when a
port is taken or the code tables or sender definitions are missing or invalid."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labintake.config import Settings
from labintake.db import migrate
from labintake.errors import ConfigurationError
from labintake.preflight import check_folder, check_port, check_service
from labintake.runtime import serve
from tests.conftest import REPO

SECONDS = 60  # a spawned worker process on a loaded 2-core machine; an idle one takes ~3 s


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def run_serve(tmp_path: Path, cwd: Path = REPO, **env: str) -> tuple[int, float, list[str]]:
    url = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    migrate(url)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LABINTAKE_")}
    environment.update(
        LABINTAKE_DEVELOPMENT="1",
        LABINTAKE_DATABASE_URL=url,
        LABINTAKE_MLLP_PORT="0",
        LABINTAKE_WEB_PORT="0",
        PYTHONPATH=str(REPO),
    )
    environment.update(env)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "labintake", "serve"],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SECONDS * 2,
        check=False,
    )
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, time.monotonic() - started, errors


def test_web_port_taken_exits_with_one_line_naming_the_setting(
    tmp_path: Path, taken_port: int
) -> None:
    code, seconds, errors = run_serve(tmp_path, LABINTAKE_WEB_PORT=str(taken_port))
    assert code == 2
    assert seconds < SECONDS
    assert len(errors) == 1
    assert f"cannot listen on 127.0.0.1:{taken_port}: the address is already in use" in errors[0]
    assert "set LABINTAKE_WEB_PORT to a free port" in errors[0]


def test_mllp_port_taken_exits_with_one_line_naming_the_setting(
    tmp_path: Path, taken_port: int
) -> None:
    code, seconds, errors = run_serve(tmp_path, LABINTAKE_MLLP_PORT=str(taken_port))
    assert (code, len(errors)) == (2, 1)
    assert seconds < SECONDS
    assert "set LABINTAKE_MLLP_PORT to a free port" in errors[0]


def test_a_relative_folder_missing_from_the_start_directory_is_refused_by_name(
    tmp_path: Path,
) -> None:
    code, _, errors = run_serve(tmp_path, cwd=tmp_path, LABINTAKE_INTERFACES_DIR="interfaces")
    assert (code, len(errors)) == (2, 1)
    assert "LABINTAKE_INTERFACES_DIR: no sender definitions folder at " in errors[0]
    assert f"{tmp_path / 'interfaces'} (interfaces from {tmp_path})" in errors[0]


def test_with_no_folder_set_the_shipped_ones_pass_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("LABINTAKE_INTERFACES_DIR", "LABINTAKE_CODE_TABLES_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(development=True, mllp_port=0, web_port=0, _env_file=None)
    assert settings.interfaces_dir == REPO / "interfaces"  # the shipped folders, in a checkout
    assert settings.code_tables_dir == REPO / "code_tables"
    check_service(settings)


def test_invalid_code_tables_are_refused_before_any_message(tmp_path: Path) -> None:
    empty = tmp_path / "tables"
    empty.mkdir()
    code, seconds, errors = run_serve(
        tmp_path,
        LABINTAKE_CODE_TABLES_DIR=str(empty),
        LABINTAKE_INTERFACES_DIR=str(REPO / "interfaces"),
    )
    assert (code, len(errors)) == (2, 1)
    assert seconds < SECONDS
    assert f"LABINTAKE_CODE_TABLES_DIR ({empty}): the code tables cannot be used" in errors[0]


def test_check_folder_names_the_setting_and_the_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_folder("LABINTAKE_CODE_TABLES_DIR", tmp_path / "nowhere", "code tables")
    assert str(caught.value).startswith(
        f"LABINTAKE_CODE_TABLES_DIR: no code tables folder at {tmp_path / 'nowhere'};"
    )


def test_check_port_accepts_a_free_port_and_refuses_a_taken_one(taken_port: int) -> None:
    check_port("LABINTAKE_WEB_PORT", "127.0.0.1", 0)
    with pytest.raises(ConfigurationError, match="LABINTAKE_WEB_PORT"):
        check_port("LABINTAKE_WEB_PORT", "127.0.0.1", taken_port)


def test_a_web_port_taken_after_the_check_still_ends_the_service(
    settings: Settings, taken_port: int
) -> None:
    # The port is taken between the check and the bind: the service stops (workers too)
    # instead of waiting forever.
    settings = settings.model_copy(update={"web_port": taken_port})
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="LABINTAKE_WEB_PORT"):
        asyncio.run(serve(settings))
    assert time.monotonic() - started < SECONDS


def test_the_service_checks_pass_with_the_repository_settings(settings: Settings) -> None:
    check_service(settings)
