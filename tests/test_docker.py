"""What can be checked of docker/ without a Docker engine: the entrypoint script (run against a
fake `labintake` on PATH), the health check script, the compose file's references, the
Dockerfile's shape, and the HAProxy configuration (`haproxy -c` when HAProxy is installed)."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from labintake.config import Settings

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
# Variables the entrypoint itself reads (not Settings fields).
ENTRYPOINT_VARIABLES = {
    "LABINTAKE_MIGRATE_ON_START",
    "LABINTAKE_MIGRATE_RETRIES",
    "LABINTAKE_MIGRATE_RETRY_SECONDS",
}

FAKE_LABINTAKE = """#!/bin/sh
# Records each call; `migrate` fails (with $MIGRATE_STATUS, by default 75: database not
# reachable) while the countdown file holds a number above zero.
echo "labintake $*" >> "$CALLS"
if [ "$1" = migrate ] && [ -f "$FAIL_MIGRATIONS" ]; then
    read -r left < "$FAIL_MIGRATIONS"
    if [ "$left" -gt 0 ]; then
        echo $((left - 1)) > "$FAIL_MIGRATIONS"
        exit "${MIGRATE_STATUS:-75}"
    fi
fi
exit 0
"""
FAKE_SLEEP = """#!/bin/sh
echo "sleep $*" >> "$CALLS"
"""


def _run_entrypoint(
    tmp_path: Path, *args: str, failing_migrations: int = 0, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("labintake", FAKE_LABINTAKE), ("sleep", FAKE_SLEEP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.unlink(missing_ok=True)
    countdown = tmp_path / "fail-migrations"
    countdown.write_text(str(failing_migrations))
    result = subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), *args],
        env={
            "PATH": str(bin_dir),
            "CALLS": str(calls),
            "FAIL_MIGRATIONS": str(countdown),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return result, lines


def test_entrypoint_migrates_then_serves_by_default(tmp_path: Path) -> None:
    result, calls = _run_entrypoint(tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls == ["labintake migrate", "labintake serve"]


def test_entrypoint_passes_serve_options_through(tmp_path: Path) -> None:
    result, calls = _run_entrypoint(tmp_path, "serve", "--demo")
    assert result.returncode == 0, result.stderr
    assert calls == ["labintake migrate", "labintake serve --demo"]


def test_entrypoint_skips_migration_when_told_to(tmp_path: Path) -> None:
    result, calls = _run_entrypoint(tmp_path, "serve", LABINTAKE_MIGRATE_ON_START="false")
    assert result.returncode == 0, result.stderr
    assert calls == ["labintake serve"]


def test_entrypoint_retries_migration_while_the_database_starts(tmp_path: Path) -> None:
    result, calls = _run_entrypoint(
        tmp_path, "serve", failing_migrations=2, LABINTAKE_MIGRATE_RETRY_SECONDS="1"
    )
    assert result.returncode == 0, result.stderr
    assert calls == [
        "labintake migrate",
        "sleep 1",
        "labintake migrate",
        "sleep 1",
        "labintake migrate",
        "labintake serve",
    ]
    assert "database not reachable (attempt 2)" in result.stderr


def test_entrypoint_does_not_serve_when_migration_keeps_failing(tmp_path: Path) -> None:
    result, calls = _run_entrypoint(
        tmp_path, "serve", failing_migrations=99, LABINTAKE_MIGRATE_RETRIES="3"
    )
    assert result.returncode != 0
    assert calls.count("labintake migrate") == 3
    assert "labintake serve" not in calls
    assert "failed after 3 attempts" in result.stderr


def test_entrypoint_does_not_retry_a_migration_that_fails_for_another_reason(
    tmp_path: Path,
) -> None:
    result, calls = _run_entrypoint(tmp_path, "serve", failing_migrations=1, MIGRATE_STATUS="1")
    assert result.returncode != 0
    assert calls == ["labintake migrate"]
    assert "migration failed (exit status 1); not starting" in result.stderr


def test_entrypoint_migrate_command_runs_only_the_migration(tmp_path: Path) -> None:
    result, calls = _run_entrypoint(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert calls == ["labintake migrate"]


def test_entrypoint_runs_other_labintake_commands_and_plain_programs(tmp_path: Path) -> None:
    result, calls = _run_entrypoint(tmp_path, "send", "a.hl7", "--port", "2575")
    assert result.returncode == 0, result.stderr
    assert calls == ["labintake send a.hl7 --port 2575"]
    result, calls = _run_entrypoint(tmp_path, "sleep", "5")
    assert result.returncode == 0
    assert calls == ["sleep 5"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", [ENTRYPOINT, DOCKER / "build-base-image"], ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    result = subprocess.run(
        ["shellcheck", "--shell=sh", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py")],
        env={**os.environ, "LABINTAKE_WEB_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthcheck_passes_when_healthz_answers_200(
    health_server: http.server.HTTPServer,
) -> None:
    assert _healthcheck(health_server.server_address[1]).returncode == 0


def test_healthcheck_fails_when_healthz_fails_or_nothing_listens(
    health_server: http.server.HTTPServer,
) -> None:
    port = health_server.server_address[1]
    _Health.status = 503
    try:
        assert _healthcheck(port).returncode == 1
    finally:
        _Health.status = 200
    health_server.shutdown()
    health_server.server_close()
    failed = _healthcheck(port)
    assert failed.returncode == 1
    assert "healthcheck:" in failed.stderr


def _compose() -> dict[str, Any]:
    document = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def test_compose_environment_names_are_settings_fields() -> None:
    fields = {f"LABINTAKE_{name.upper()}" for name in Settings.model_fields}
    services = _compose()["services"]
    seen = set()
    for service in services.values():
        for name in service.get("environment", {}):
            if name.startswith("LABINTAKE_"):
                seen.add(name)
                assert name in fields | ENTRYPOINT_VARIABLES, name
    assert {"LABINTAKE_DATABASE_URL", "LABINTAKE_SECRET_KEY", "LABINTAKE_LIS_HOST"} <= seen


def test_compose_runs_migration_once_before_two_instances_on_postgresql() -> None:
    services = _compose()["services"]
    instances = [name for name, s in services.items() if s.get("command") == ["serve"]]
    assert len(instances) == 2
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in instances:
        service = services[name]
        assert service["environment"]["LABINTAKE_MIGRATE_ON_START"] == "false"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["environment"]["LABINTAKE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in service["environment"]["LABINTAKE_DATABASE_URL"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "postgres" in services


def test_compose_build_context_and_mounted_files_exist() -> None:
    services = _compose()["services"]
    for service in services.values():
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context == REPO
            assert (context / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), source


def test_balancer_forwards_to_each_instance_on_its_configured_ports() -> None:
    services = _compose()["services"]
    config = (DOCKER / "haproxy.cfg").read_text()
    instances = [name for name, s in services.items() if s.get("command") == ["serve"]]
    for name in instances:
        env = services[name]["environment"]
        mllp, web = env["LABINTAKE_MLLP_PORT"], env["LABINTAKE_WEB_PORT"]
        assert env["LABINTAKE_MLLP_HOST"] == "0.0.0.0"
        assert re.search(rf"server {name} {name}:{mllp} port {web}\b", config), name
        assert re.search(rf"server {name} {name}:{web}\b", config), name
    published = services["mllp-balancer"]["ports"]
    assert "2575:2575" in published
    lis = services["stub-lis"]["command"]
    assert (
        lis[lis.index("--port") + 1] == services[instances[0]]["environment"]["LABINTAKE_LIS_PORT"]
    )


def test_compose_turns_off_the_image_health_check_for_the_stub_lis() -> None:
    # The image's health check asks a labintake web port, which the stub LIS does not have.
    stub = _compose()["services"]["stub-lis"]
    assert stub["image"] == "labintake:latest"
    assert stub["healthcheck"] == {"disable": True}


def test_dockerfile_is_multi_stage_non_root_with_health_check() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE)
    assert len(stages) >= 2
    # Every stage starts from the PYTHON_IMAGE build argument, Docker Hub's image by default.
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, flags=re.MULTILINE)
    assert set(re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)) == {"${PYTHON_IMAGE}"}
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert user
    assert user[-1].split(":")[0] not in {"root", "0"}
    assert "HEALTHCHECK" in text
    assert "labintake-healthcheck" in text
    for source in re.findall(r"^COPY\s+(?!--from)(\S+)\s", text, flags=re.MULTILINE):
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    env_names = set(re.findall(r"\b(LABINTAKE_[A-Z_]+)=", text))
    fields = {f"LABINTAKE_{name.upper()}" for name in Settings.model_fields}
    assert env_names <= fields


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_configuration_is_valid() -> None:
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(DOCKER / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Only name resolution may be missing here (the instances' names exist inside compose).
    for line in (result.stdout + result.stderr).splitlines():
        if "[WARNING]" in line:
            assert "could not resolve address" in line, line


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_passes_docker_compose_validation() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(DOCKER / "docker-compose.yml"), "config", "-q"],
        env={**os.environ, "POSTGRES_PASSWORD": "example", "LABINTAKE_SECRET_KEY": "example"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
