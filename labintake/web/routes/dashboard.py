"""The manager's dashboard: figures with charts and tables, CSV exports, the orders behind
each number, and the outbound messages (dead letters re-sendable)."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from labintake.db import utcnow
from labintake.errors import NotFoundError, WorkflowError
from labintake.release.delivery import list_outbox, resend_dead_letter
from labintake.stats import AGING_BUCKETS, STAGES, Snapshot, snapshot
from labintake.stats_coders import Productivity, productivity
from labintake.stats_drilldown import order_rows
from labintake.stats_turnaround import PATHS, Period, TurnaroundReport, report
from labintake.web.dashboard_tables import (
    Table,
    as_of_text,
    build_charts,
    build_tables,
    build_tiles,
)
from labintake.web.deps import ManagerUser, RowId, SessionDep
from labintake.web.rendering import render
from labintake.web.turnaround_tables import trend_chart, turnaround_tables

router = APIRouter()

WINDOWS = {"24h": 24, "7d": 168}
DEFAULT_RANGE_DAYS = 7
CACHE_SECONDS = 30.0
_cache: dict[tuple[int, int], tuple[float, Snapshot]] = {}
_range_cache: dict[tuple[int, date, date], tuple[float, TurnaroundReport, Productivity]] = {}
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


def cached_range(
    request: Request, session: Session, period: Period, refresh: bool
) -> tuple[TurnaroundReport, Productivity]:
    """Turnaround and productivity for `period`, computed at most every CACHE_SECONDS."""
    key = (id(request.app), period.first, period.last)
    with _cache_lock:
        hit = _range_cache.get(key)
        if hit is not None and not refresh and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1], hit[2]
    found, work = report(session, period), productivity(session, period)
    with _cache_lock:
        if len(_range_cache) > 64:
            _range_cache.clear()
        _range_cache[key] = (time.monotonic(), found, work)
    return found, work


def _day(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise WorkflowError(f"{field} must be a date (YYYY-MM-DD)", field=field) from exc


def _period(start: str | None, end: str | None) -> Period:
    """The days asked for; by default the last DEFAULT_RANGE_DAYS days up to today (UTC)."""
    last = _day(end, "end") or utcnow().date()
    first = _day(start, "start") or last - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    return Period.of(first, last)


def _range_asked(start: str | None, end: str | None) -> tuple[Period, str]:
    """The range asked for, or the default range and why the one asked for is refused."""
    try:
        return _period(start, end), ""
    except WorkflowError as exc:
        return _period(None, None), str(exc)


def _range_context(
    request: Request, session: Session, start: str | None, end: str | None, refresh: bool
) -> dict[str, Any]:
    """What the date-range section shows; a bad range is said beside the fields and the
    default range shown instead."""
    period, error = _range_asked(start, end)
    found, work = cached_range(request, session, period, refresh)
    return {
        "period": period,
        "range_error": error,
        "range_start": start or period.first.isoformat(),
        "range_end": end or period.last.isoformat(),
        "range_tables": turnaround_tables(found, work),
        "range_chart": trend_chart(found),
        "range_orders": found.orders,
    }


def _export_query(window: str, period: Period) -> str:
    return urlencode(
        {"window": window, "start": period.first.isoformat(), "end": period.last.isoformat()}
    )


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
    start: str | None = None,
    end: str | None = None,
) -> Response:
    figures = cached_snapshot(request, session, _window(window), refresh)
    # The date-range section loads after the page (its own request), so that the live
    # figures above it are not kept waiting.
    period, error = _range_asked(start, end)
    asked = {"window": window, "start": start or period.first.isoformat()}
    asked["end"] = end or period.last.isoformat()
    if refresh:
        asked["refresh"] = "1"
    return render(
        request,
        "dashboard.html",
        {
            "period": period,
            "range_error": error,
            "range_start": asked["start"],
            "range_end": asked["end"],
            "range_url": f"/dashboard/turnaround?{urlencode(asked)}",
            "export_query": _export_query(window, period),
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


@router.get("/dashboard/turnaround")
def turnaround_section(
    request: Request,
    user: ManagerUser,
    session: SessionDep,
    window: str = "24h",
    start: str | None = None,
    end: str | None = None,
    refresh: bool = False,
) -> Response:
    """The date-range section alone, for the page to load after itself and to swap in when
    a date changes; the address bar gets the dashboard's own address with the range."""
    _window(window)
    if not request.headers.get("hx-request"):
        query = urlencode(
            {k: v for k, v in {"window": window, "start": start, "end": end}.items() if v}
        )
        return RedirectResponse(f"/dashboard?{query}", 303)
    ranged = _range_context(request, session, start, end, refresh)
    response = render(
        request,
        "partials/dash_range.html",
        {
            **ranged,
            "window": window,
            "export_query": _export_query(window, ranged["period"]),
            "oob": True,
        },
    )
    if not ranged["range_error"]:
        response.headers["HX-Replace-Url"] = f"/dashboard?{_export_query(window, ranged['period'])}"
    return response


@router.get("/dashboard/export/{name}.csv")
def export_table(
    request: Request,
    name: str,
    user: ManagerUser,
    session: SessionDep,
    window: str = "24h",
    start: str | None = None,
    end: str | None = None,
) -> Response:
    figures = cached_snapshot(request, session, _window(window), refresh=False)
    tables: dict[str, Table] = build_tables(figures)
    stamp = figures.as_of.strftime("%Y%m%dT%H%M%SZ")
    if name not in tables:
        period = _period(start, end)
        tables = turnaround_tables(*cached_range(request, session, period, refresh=False))
        stamp = f"{period.first.isoformat()}_{period.last.isoformat()}"
    if name not in tables:
        raise NotFoundError(f"no dashboard table {name!r}")
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
    received_from: str | None = None,
    received_to: str | None = None,
    path: str | None = None,
    reached: str | None = None,
    assigned: str | None = None,
    resolved_by: str | None = None,
    resolved_from: str | None = None,
    resolved_to: str | None = None,
) -> Response:
    if age and age not in {name for name, _, _ in AGING_BUCKETS}:
        raise WorkflowError("unknown age bucket")
    if stage and stage not in STAGES:
        raise WorkflowError("unknown stage")
    if reached and reached not in STAGES:
        raise WorkflowError(f"reached must be one of {', '.join(STAGES)}")
    if path and path not in PATHS:
        raise WorkflowError(f"path must be one of {', '.join(PATHS)}")
    first = _day(received_from, "received_from")
    last = _day(received_to, "received_to")
    resolved_first = _day(resolved_from, "resolved_from")
    resolved_last = _day(resolved_to, "resolved_to")
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
        received_from=Period.of(first, first).start if first else None,
        received_until=Period.of(last, last).end if last else None,
        path=path,
        reached=reached,
        assigned=assigned,
        resolved_by=resolved_by,
        resolved_from=Period.of(resolved_first, resolved_first).start if resolved_first else None,
        resolved_until=Period.of(resolved_last, resolved_last).end if resolved_last else None,
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
        "received from": received_from,
        "received to (included)": received_to,
        "path": path,
        "reached": reached,
        "claimed by": assigned,
        "released or rejected by": resolved_by,
        "resolved from": resolved_from,
        "resolved to (included)": resolved_to,
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
