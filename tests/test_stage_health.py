"""A background stage that keeps failing makes /healthz say "degraded" (naming it) and shows
in /metrics; its next success clears it. Written by the worker, read by the web app, through
the database."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from labintake.background import BackgroundWorkers
from labintake.config import Settings
from labintake.db import utcnow
from labintake.models import WorkerStage
from labintake.stage_health import StageHealth, failing_stages
from labintake.web.app import create_app

HEALTHY = {"status": "ok", "database": "ok"}


class Verifier:
    """A stage that fails while `broken` is set."""

    def __init__(self) -> None:
        self.broken = True
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.broken:
            raise RuntimeError("code tables not loaded")
        return 0


def wait_for(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_failing_stage_degrades_healthz_and_counts_in_metrics(
    settings: Settings, engine: Engine
) -> None:
    settings = settings.model_copy(update={"metrics_token": "scrape-secret-123"})
    client = TestClient(create_app(settings, engine))
    assert client.get("/healthz").json() == HEALTHY
    verifier = Verifier()
    workers = BackgroundWorkers(
        idle_sleep=0.05, error_sleep=0.1, health=StageHealth(engine, "host-a:1")
    )
    workers.register("verifier", verifier)
    workers.start()
    try:
        wait_for(lambda: verifier.calls >= 3)
        response = client.get("/healthz")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "degraded"
        assert [(f["stage"], f["instance"]) for f in body["failing"]] == [("verifier", "host-a:1")]
        assert body["failing"][0]["error"] == "RuntimeError: code tables not loaded"
        assert body["failing"][0]["consecutive_failures"] >= 2
        metrics = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"}).text
        assert 'labintake_worker_stage_failing{stage="verifier"} 1.0' in metrics
        assert 'labintake_worker_stage_failures{stage="verifier"}' in metrics
        verifier.broken = False
        wait_for(lambda: client.get("/healthz").json() == HEALTHY)
        metrics = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"}).text
        assert 'labintake_worker_stage_failing{stage="verifier"} 0.0' in metrics
    finally:
        workers.stop()


def test_a_failing_row_of_a_worker_process_long_gone_is_not_counted(engine: Engine) -> None:
    health = StageHealth(engine, "host-b:2")
    health.failed("release", ValueError("LIS refused"))
    with Session(engine) as session:
        assert [f.stage for f in failing_stages(session)] == ["release"]
        session.execute(update(WorkerStage).values(updated_at=utcnow() - timedelta(minutes=10)))
        session.commit()
        assert failing_stages(session) == []
