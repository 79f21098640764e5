"""The image built and run for real, with podman (or docker).

The base is built from Debian bookworm's own packages by `docker/build-base-image` (the Docker
Hub images need not be reachable), then `docker/Dockerfile` is built on it. One container on
the SQLite default migrates then serves as uid 10001; its health check, `/healthz` and MLLP
answer on published ports; SIGTERM stops it cleanly and its volume keeps the database for the
next container. Then the compose file's layout with the machine's own PostgreSQL and HAProxy:
a one-shot `migrate` container, two instances that do not migrate, the stub LIS, all on the
host network, load through HAProxy running `docker/haproxy.cfg`.

Skipped without root and debootstrap (for the base), or without podman or docker whose engine
can run a container here; the skip says which. Images, containers, the volume and the
database are the run's own and removed afterwards. Run with `-rP` to see the times.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from benchmarks.databases import fresh_postgresql_database
from benchmarks.loadgen import LoadResult, LoadSpec, parse_ack, run_load_blocking
from benchmarks.messages import SENDING_APPLICATION, SyntheticMessage, synthetic_orders
from labintake.db import make_engine
from tests.system.cluster import free_port
from tests.system.containers import (
    REPO,
    Engine,
    build_unavailable_reason,
    find_engine,
    run_name,
)
from tests.system.counts import pipeline_counts
from tests.system.instances import haproxy_available, start_balancer, wait_until

pytestmark = pytest.mark.slow

SAMPLE = REPO / "interfaces" / "prairie-clinic" / "samples" / "01-lipid-and-a1c-one-order.hl7"
STOP_TIMEOUT = 10  # seconds, the engines' default before SIGKILL
SECRET_KEY = secrets.token_hex(32)
UID = 10001
CLUSTER_MESSAGES = 300


@dataclass(frozen=True)
class BuiltImage:
    engine: Engine
    base: str
    image: str
    base_seconds: float
    image_seconds: float

    def timings(self) -> str:
        return (
            f"{self.engine.program}: base image (debootstrap) {self.base_seconds:.0f} s, "
            f"labintake image {self.image_seconds:.0f} s"
        )


@pytest.fixture
def built(tmp_path: Path) -> Iterator[BuiltImage]:
    reason = build_unavailable_reason()
    if reason:
        pytest.skip(reason)
    engine, why_not = find_engine()
    if engine is None:
        pytest.skip(f"no container engine: {why_not}")
    base = f"localhost/{run_name('python')}:3.11-bookworm"
    image = f"localhost/{run_name('image')}:latest"
    try:
        base_seconds = engine.build_base(base, tmp_path / "build-base-image.log")
        failure = engine.run_failure(base)
        if failure:
            pytest.skip(
                f"{engine.program} builds images but cannot run a container here: {failure}"
            )
        image_seconds = engine.build_image(base, image, tmp_path / "build.log")
        yield BuiltImage(engine, base, image, base_seconds, image_seconds)
    finally:
        engine.remove_image(image)
        engine.remove_image(base)


def _healthz(port: int) -> dict[str, str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            if response.status != 200:
                return None
            answer: dict[str, str] = json.loads(response.read())
            return answer
    except OSError:
        return None


def _answers(port: int) -> bool:
    return _healthz(port) is not None


def _send(path: Path, port: int) -> tuple[str, str]:
    """`labintake send` from the host: (control id, ACK code) of the file's one message."""
    result = subprocess.run(
        [sys.executable, "-m", "labintake", "send", str(path), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r": (\S+) (AA|AE|AR|CA|CE|CR)\s*$", result.stdout)
    assert found, result.stdout + result.stderr
    return found.group(1), found.group(2)


def _stored_in_container(engine: Engine, name: str, control_id: str) -> list[str]:
    """ACK codes of the inbound rows for `control_id`, read inside the container."""
    script = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect('file:/var/lib/labintake/labintake.sqlite3?mode=ro', uri=True)\n"
        "rows = db.execute('SELECT ack_code FROM inbound_message WHERE control_id = ?',"
        " (sys.argv[1],)).fetchall()\n"
        "print(' '.join(code for (code,) in rows))\n"
    )
    result = engine.exec(name, "python", "-c", script, control_id)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@dataclass(frozen=True)
class Serving:
    name: str
    mllp_port: int
    web_port: int


def _serve_on_volume(built: BuiltImage, volume: str) -> Serving:
    """A container on the SQLite default with its state on `volume`, ports published on the
    loopback; returned once `/healthz` answers."""
    name = run_name("serve")
    built.engine.start(
        name,
        built.image,
        env={"LABINTAKE_SECRET_KEY": SECRET_KEY},
        options=[
            "--volume",
            f"{volume}:/var/lib/labintake",
            "--publish",
            "127.0.0.1::2575",
            "--publish",
            "127.0.0.1::8000",
        ],
    )
    serving = Serving(
        name,
        built.engine.published_port(name, 2575),
        built.engine.published_port(name, 8000),
    )
    if not wait_until(functools.partial(_answers, serving.web_port), 90):
        raise AssertionError(f"/healthz never answered\n{built.engine.logs(name)[-4000:]}")
    # /healthz comes from the web process, which can answer before the listener process has
    # logged its port: wait for that line too rather than assume it is already there.
    if not wait_until(lambda: "listening for HL7 (MLLP)" in built.engine.logs(name), 30):
        raise AssertionError(f"the listener never started\n{built.engine.logs(name)[-4000:]}")
    return serving


def _check_one_container(built: BuiltImage) -> str:
    """Migrate then serve as uid 10001; health check, /healthz and MLLP on published ports;
    SIGTERM; the volume keeps the database for the next container."""
    engine = built.engine
    volume = run_name("data")
    first: Serving | None = None
    second: Serving | None = None
    try:
        first = _serve_on_volume(built, volume)
        log = engine.logs(first.name)
        assert "Running upgrade" in log, log[-4000:]
        assert log.index("database at head") < log.index("listening for HL7 (MLLP)")
        status = engine.exec(first.name, "cat", "/proc/1/status").stdout
        uids = re.search(r"^Uid:\s+(.*)$", status, flags=re.MULTILINE)
        assert uids, status
        assert set(uids.group(1).split()) == {str(UID)}, "the service does not run as uid 10001"
        # The entrypoint replaced itself with the service, which gets the engine's signals.
        command = engine.exec(first.name, "cat", "/proc/1/cmdline").stdout.split("\0")
        assert command[-2:] == ["serve", ""], command
        assert command[-3].endswith("/labintake"), command
        assert engine.exec(first.name, "id", "-u").stdout.strip() == str(UID)

        check = engine.health_check(first.name)
        assert check.returncode == 0, check.stdout + check.stderr
        assert _healthz(first.web_port) == {"status": "ok", "database": "ok"}

        control_id, code = _send(SAMPLE, first.mllp_port)
        assert code == "AA"
        assert _stored_in_container(engine, first.name, control_id) == ["AA"]

        stop_seconds = engine.stop(first.name, STOP_TIMEOUT)
        exit_code = engine.exit_code(first.name)
        log = engine.logs(first.name)
        assert exit_code == 0, log[-4000:]
        assert stop_seconds < STOP_TIMEOUT - 1, "not stopped by SIGTERM before the timeout"
        assert "shutting down" in log
        engine.remove(first.name)

        second = _serve_on_volume(built, volume)
        log = engine.logs(second.name)
        assert "database at head" in log
        assert "Running upgrade" not in log, "the schema was migrated again"
        assert _stored_in_container(engine, second.name, control_id) == ["AA"]
        # The same message again: the duplicate gets its original ACK and is not stored twice.
        assert _send(SAMPLE, second.mllp_port) == (control_id, "AA")
        assert _stored_in_container(engine, second.name, control_id) == ["AA"]
    finally:
        engine.remove(*(c.name for c in (first, second) if c is not None))
        engine.remove_volume(volume)
    return (
        f"one container: uid {UID}, health check and /healthz ok, {control_id} AA and stored "
        f"once, stopped by SIGTERM in {stop_seconds:.1f} s (exit 0), the next container on "
        f"the volume found it and answered the resend with the original AA"
    )


def _lis_control_ids(log: str) -> Counter[str]:
    """Control ids the stub LIS took (its log: `stub LIS received TYPE ID ... -> AA`)."""
    return Counter(re.findall(r"stub LIS received \S+ (\S+) .*-> AA$", log, flags=re.MULTILINE))


def _load(ports: list[int], messages: list[SyntheticMessage]) -> list[LoadResult]:
    """The messages over four connections in all, an equal share to each port in turn."""
    shares = [messages[i :: len(ports)] for i in range(len(ports))]
    return [
        run_load_blocking(
            LoadSpec(
                port=port, connections=4 // len(ports), max_messages=len(share), keep_acks=True
            ),
            share,
        )
        for port, share in zip(ports, shares, strict=True)
    ]


def _check_two_instances(built: BuiltImage, workdir: Path) -> str:
    """The compose file's layout on the host network against this machine's PostgreSQL: a
    one-shot migrate container, two instances that do not migrate, the stub LIS, and load
    through HAProxy running docker/haproxy.cfg (straight to the instances without HAProxy)."""
    engine = built.engine
    host = ["--network", "host"]
    names = {kind: run_name(kind) for kind in ("stub-lis", "migrate", "instance-1", "instance-2")}
    lis_port = free_port()
    instances = {names["instance-1"]: (free_port(), free_port())}
    instances[names["instance-2"]] = (free_port(), free_port())
    messages = list(synthetic_orders("CTR", CLUSTER_MESSAGES))
    balancer = None
    with fresh_postgresql_database("labintake_container", migrated=False) as url:
        common = {"LABINTAKE_DATABASE_URL": url, "LABINTAKE_SECRET_KEY": SECRET_KEY}
        try:
            engine.start(
                names["stub-lis"],
                built.image,
                "-m",
                "labintake.release.stub_lis",
                "--host",
                "127.0.0.1",
                "--port",
                str(lis_port),
                options=[*host, "--entrypoint", "python"],
            )
            migrate = engine.run_once(
                names["migrate"], built.image, "migrate", env=common, options=host
            )
            migrate_log = engine.logs(names["migrate"])
            assert migrate.returncode == 0, migrate_log[-4000:]
            assert "Running upgrade" in migrate_log
            for name, (mllp, web) in instances.items():
                engine.start(
                    name,
                    built.image,
                    "serve",
                    env={
                        **common,
                        "LABINTAKE_MIGRATE_ON_START": "false",
                        "LABINTAKE_LIS_HOST": "127.0.0.1",
                        "LABINTAKE_LIS_PORT": str(lis_port),
                        "LABINTAKE_MLLP_PORT": str(mllp),
                        "LABINTAKE_WEB_PORT": str(web),
                    },
                    options=host,
                )
            for name, (_mllp, web) in instances.items():
                assert wait_until(functools.partial(_answers, web), 90), engine.logs(name)
            if haproxy_available():
                balancer = start_balancer(list(instances.values()), workdir / "haproxy")
                route = "through HAProxy"
                results = _load([balancer.mllp_port], messages)
            else:
                route = "straight to the instances (HAProxy not installed)"
                results = _load([mllp for mllp, _web in instances.values()], messages)
            delivered = wait_until(
                lambda: (
                    pipeline_counts(url, SENDING_APPLICATION).outbox_statuses.get("delivered", 0)
                    >= CLUSTER_MESSAGES
                ),
                timeout=180,
                interval=2.0,
            )
            counts = pipeline_counts(url, SENDING_APPLICATION)
            database = make_engine(url)
            try:
                with database.connect() as conn:
                    revisions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            finally:
                database.dispose()
            logs = {name: engine.logs(name) for name in instances}
            stop_seconds = {name: engine.stop(name, STOP_TIMEOUT) for name in instances}
            stop_seconds[names["stub-lis"]] = engine.stop(names["stub-lis"], STOP_TIMEOUT)
            exit_codes = {name: engine.exit_code(name) for name in stop_seconds}
            lis = _lis_control_ids(engine.logs(names["stub-lis"]))
        finally:
            if balancer is not None:
                balancer.stop()
            engine.remove(*names.values())

    acks = Counter(parse_ack(ack)[0] for result in results for ack in result.acks.values())
    connections = {name: log.count('"connection opened"') for name, log in logs.items()}
    summary = (
        f"two instances, load {route}: sent {sum(r.sent for r in results)}, ACKs "
        f"{dict(acks)}; {counts.line()}; the LIS took {sum(lis.values())} messages for "
        f"{len(lis)} control ids; MLLP connections per instance {list(connections.values())}; "
        f"stopped in {', '.join(f'{s:.1f} s' for s in stop_seconds.values())}"
    )
    print(summary)
    assert acks == {"AA": CLUSTER_MESSAGES}
    assert delivered, counts.line()
    # The schema was migrated once, by the migrate container; the instances did not touch it.
    assert len(revisions) == 1
    for log in logs.values():
        assert "Running upgrade" not in log
        assert "alembic" not in log
        assert '"level": "ERROR"' not in log
        assert '"level": "CRITICAL"' not in log
    # Both instances served, each message stored once and released once to the LIS, which
    # took each once (two instances alike in hostname and pid once delivered everything twice).
    assert all(n > 0 for n in connections.values()), connections
    assert set(counts.stored) == {m.control_id for m in messages}
    assert set(counts.stored.values()) == {1}
    assert counts.releases_per_order == {1: CLUSTER_MESSAGES}
    assert set(lis) == counts.outbox_control_ids
    assert set(lis.values()) == {1}, "the LIS took an order more than once"
    # Every container stopped on SIGTERM, before the engine had to kill it.
    assert exit_codes == {name: 0 for name in exit_codes}, exit_codes
    assert all(s < STOP_TIMEOUT - 1 for s in stop_seconds.values()), stop_seconds
    return summary


def test_image_built_from_debian_packages_serves_stops_cleanly_and_runs_as_two_instances(
    built: BuiltImage, tmp_path: Path
) -> None:
    # One test, so that under pytest-xdist the image is built once, on one worker.
    print(built.timings())
    started = time.monotonic()
    print(_check_one_container(built))
    single = time.monotonic() - started
    started = time.monotonic()
    _check_two_instances(built, tmp_path)
    print(f"run: one container {single:.0f} s, two instances {time.monotonic() - started:.0f} s")
