"""The manager's dashboard: figures with charts and tables, CSV exports, the orders behind
each number, and the outbound messages (dead letters re-sendable)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from labintake.db import utcnow
from labintake.errors import NotFoundError, WorkflowError
from labintake.release.delivery import list_outbox, resend_dead_letter
from labintake.stats import AGING_BUCKETS, STAGES, Snapshot, order_rows, snapshot
from labintake.web.dashboard_tables import as_of_text, build_charts, build_tables, build_tiles
from labintake.web.deps import ManagerUser, RowId, SessionDep
from labintake.web.rendering import render

router = APIRouter()

WINDOWS = {"24h": 24, "7d": 168}
CACHE_SECONDS = 30.0
_cache: dict[tuple[int, int], tuple[float, Snapshot]] = {}
_cache_lock = threading.Lock()


def cached_snapshot(
    request: Request, session: Session, window_hours: int, refresh: bool
) -> Snapshot:
    """The figures, computed at most every CACHE_SECONDS unless a refresh is asked for."""
    key = (id(request.app), window_hours)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and not refresh and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
    figures = snapshot(session, window_hours=window_hours)
    with _cache_lock:
        _cache[key] = (time.monotonic(), figures)
    return figures


def _window(value: str) -> int:
    if value not in WINDOWS:
        raise WorkflowError(f"window must be one of {', '.join(WINDOWS)}")
    return WINDOWS[value]


@router.get("/dashboard")
def dashboard(
    request: Request,
    user: ManagerUser,
    session: SessionDep,
    window: str = "24h",
    refresh: bool = False,
) -> Response:
    figures = cached_snapshot(request, session, _window(window), refresh)
    return render(
        request,
        "dashboard.html",
        {
            "figures": figures,
            "as_of": as_of_text(figures.as_of),
            "window": window,
            "windows": list(WINDOWS),
            "tables": build_tables(figures),
            "charts": build_charts(figures),
            "tiles": build_tiles(figures),
            "held": figures.by_status.get("held", 0) + figures.by_status.get("awaiting_office", 0),
        },
    )


@router.get("/dashboard/export/{name}.csv")
def export_table(
    request: Request, name: str, user: ManagerUser, session: SessionDep, window: str = "24h"
) -> Response:
    figures = cached_snapshot(request, session, _window(window), refresh=False)
    tables = build_tables(figures)
    if name not in tables:
        raise NotFoundError(f"no dashboard table {name!r}")
    stamp = figures.as_of.strftime("%Y%m%dT%H%M%SZ")
    return Response(
        tables[name].csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'},
    )


def _parse_time(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WorkflowError(f"{field} must be an ISO date and time") from exc
    if parsed.tzinfo is None:
        raise WorkflowError(f"{field} must carry its UTC offset")
    return parsed


@router.get("/dashboard/orders")
def orders_behind(
    request: Request,
    user: ManagerUser,
    session: SessionDep,
    status: str | None = None,
    holds: bool = False,
    reason: str | None = None,
    office: str | None = None,
    sender: str | None = None,
    age: str | None = None,
    stage: str | None = None,
    hour: str | None = None,
    since: str | None = None,
    out_of_date: bool = False,
) -> Response:
    if age and age not in {name for name, _, _ in AGING_BUCKETS}:
        raise WorkflowError("unknown age bucket")
    if stage and stage not in STAGES:
        raise WorkflowError("unknown stage")
    rows = order_rows(
        session,
        status=status,
        holds=holds,
        reason=reason,
        office=office,
        sender=sender,
        age=age,
        stage=stage,
        out_of_date=out_of_date,
        hour=_parse_time(hour, "hour"),
        since=_parse_time(since, "since"),
    )
    described = {
        "code tables": "out of date (checked against a release that does not cover the date)"
        if out_of_date
        else None,
        "status": status,
        "on hold": "held or awaiting office" if holds else None,
        "reason": reason,
        "office": office,
        "sender": sender,
        "age": age,
        "stage": stage,
        "hour": hour,
        "since": since,
    }
    return render(
        request,
        "dashboard_orders.html",
        {
            "rows": rows,
            "filters": {k: v for k, v in described.items() if v},
            "as_of": as_of_text(utcnow()),
            "limit": 500,
        },
    )


@router.get("/dashboard/outbox")
def outbox_list(
    request: Request,
    user: ManagerUser,
    session: SessionDep,
    status: Annotated[str, Query(pattern="^(pending|failing|refused|dead|delivered)$")] = "dead",
    resent: str | None = None,
) -> Response:
    return render(
        request,
        "dashboard_outbox.html",
        {
            "entries": list_outbox(session, status),
            "status": status,
            "resent": resent,
            "statuses": ["dead", "failing", "pending", "refused", "delivered"],
            "now": utcnow(),
            "hour": timedelta(hours=1),
        },
    )


@router.post("/dashboard/outbox/{entry_id}/resend")
def resend(
    entry_id: RowId,
    user: ManagerUser,
    session: SessionDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    entry = resend_dead_letter(session, entry_id, actor=user.username)
    session.commit()
    return RedirectResponse(f"/dashboard/outbox?status=dead&resent={entry.control_id}", 303)
