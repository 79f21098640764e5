"""`GET /api/stats` (JSON) and `GET /metrics` (Prometheus text): the dashboard's figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from labintake.auth.roles import Role
from labintake.auth.tokens import tokens_match
from labintake.errors import PermissionDeniedError
from labintake.stage_health import failing_stages, failure_totals
from labintake.stats import Snapshot, snapshot
from labintake.web.deps import ManagerUser, SessionDep, get_policy, get_settings
from labintake.web.deps import _authenticate as authenticate
from labintake.web.schemas.stats import Stats

router = APIRouter()


@router.get("/api/stats", response_model=Stats, tags=["stats"])
def api_stats(
    user: ManagerUser,
    session: SessionDep,
    window_hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24,
) -> dict[str, Any]:
    return snapshot(session, window_hours=window_hours).as_json()


def metrics_text(
    figures: Snapshot,
    failing: Sequence[str] = (),
    failures: Mapping[str, int] | None = None,
) -> bytes:
    """The snapshot as Prometheus gauges (a fresh registry per scrape: values, not counters),
    with the background stages failing now and their failures on record."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    orders = gauge("labintake_orders", "Orders by status now", ("status",))
    for status, n in figures.by_status.items():
        orders.labels(status).set(n)
    holds = gauge("labintake_holds_by_reason", "Held orders by open hold reason", ("reason",))
    for code, n in figures.holds_by_reason:
        holds.labels(code).set(n)
    aging = gauge("labintake_holds_by_age", "Held orders by age bucket", ("age",))
    for name, n in figures.aging:
        aging.labels(name).set(n)
    outbox = gauge("labintake_outbox_messages", "Outbound messages by status", ("status",))
    for status, n in figures.outbox.items():
        outbox.labels(status).set(n)
    gauge("labintake_outbox_failing", "Outbound messages being retried").set(
        figures.failing_deliveries
    )
    turnaround = gauge(
        "labintake_turnaround_minutes",
        f"Minutes from receipt, orders released in the last {figures.window_hours} h",
        ("interval", "quantile"),
    )
    for interval, t in (
        ("released", figures.turnaround_released),
        ("delivered", figures.turnaround_delivered),
        ("query_answered", figures.turnaround_query),
    ):
        if t.median_minutes is not None:
            turnaround.labels(interval, "0.5").set(t.median_minutes)
        if t.p90_minutes is not None:
            turnaround.labels(interval, "0.9").set(t.p90_minutes)
    window = gauge(
        "labintake_window_orders",
        f"Orders received in the last {figures.window_hours} h, by where they are",
        ("where",),
    )
    rec = figures.reconciliation
    window.labels("received").set(rec.received)
    window.labels("delivered").set(rec.delivered)
    window.labels("unaccounted").set(rec.unaccounted)
    gauge("labintake_messages_received_window", "HL7 messages received in the window").set(
        figures.messages_received
    )
    gauge(
        "labintake_code_tables_out_of_date_orders",
        "Orders not yet released whose diagnoses no loaded ICD-10-CM release covers "
        "(code tables out of date when above 0)",
    ).set(figures.code_tables_out_of_date)
    gauge("labintake_stats_as_of_seconds", "When these figures were computed").set(
        figures.as_of.timestamp()
    )
    stage_failing = gauge(
        "labintake_worker_stage_failing",
        "1 while a background stage keeps failing (see /healthz), else 0",
        ("stage",),
    )
    stage_failures = gauge(
        "labintake_worker_stage_failures",
        "Failures of each background stage since its worker process started",
        ("stage",),
    )
    for stage, count in sorted((failures or {}).items()):
        stage_failures.labels(stage).set(count)
        stage_failing.labels(stage).set(1 if stage in failing else 0)
    data: bytes = generate_latest(registry)
    return data


def metrics_access(request: Request, session: SessionDep) -> Any:
    """A manager (or admin) by session or token, or a scraper with LABINTAKE_METRICS_TOKEN."""
    settings = get_settings(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if (
        settings.metrics_token
        and scheme.lower() == "bearer"
        and tokens_match(token.strip(), settings.metrics_token)
    ):
        return None
    principal = authenticate(request, session, get_policy(request))
    if not principal.role.allows(Role.MANAGER):
        raise PermissionDeniedError("this needs the manager role")
    return principal.user


metrics_access.required_role = Role.MANAGER  # type: ignore[attr-defined]


@router.get(
    "/metrics",
    tags=["stats"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(session: SessionDep, _access: Annotated[Any, Depends(metrics_access)]) -> Response:
    failing = {f.stage for f in failing_stages(session)}
    body = metrics_text(snapshot(session), sorted(failing), failure_totals(session))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
