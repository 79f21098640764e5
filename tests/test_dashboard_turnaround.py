"""Turnaround by stage, the daily trend, holds by office and coder productivity over a date
range: known timestamps in, the figures they imply out (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, date, datetime, timedelta

from factories_release import add_order
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.db import session_scope
from labintake.models.orders import Order, OrderEvent, Verification
from labintake.models.queue import OfficeQuery
from labintake.stats_coders import productivity
from labintake.stats_turnaround import Figures, Period, report, stage_figures
from labintake.web.app import create_app
from labintake.web.dashboard_tables import minutes_cell
from labintake.web.turnaround_tables import trend_chart
from tests.factories import make_token, make_user

DAY = date(2026, 11, 2)


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def verification(session: Session, order: Order, when: datetime, outcome: str) -> None:
    assert order.id is not None
    session.add(Verification(order_id=order.id, at=when, outcome=outcome))
    session.add(
        OrderEvent(order_id=order.id, at=when, actor="system", action="verified", detail={})
    )


def event(session: Session, order: Order, when: datetime, actor: str, action: str) -> None:
    assert order.id is not None
    session.add(OrderEvent(order_id=order.id, at=when, actor=actor, action=action, detail={}))


def order_at(
    session: Session,
    received: datetime,
    *,
    status: str,
    office: str = "North Clinic",
    released: datetime | None = None,
    delivered: datetime | None = None,
    assigned: str | None = None,
) -> Order:
    order = add_order(session, status=status, office=office, received_at=received)
    order.verified_at = None
    order.released_at = released
    order.delivered_at = delivered
    order.assigned_to = assigned
    session.add(order)
    session.flush()
    return order


def seed(engine: Engine) -> None:
    """Three automatic orders and three held ones on DAY, one order the day before.

    automatic: received -> verified 1, 1, 2 min; -> released 2, 4, 6 min; released ->
    delivered 1, 2 min (one not yet acknowledged).
    held: H1 held 08:01, claimed by ana 08:31, queried 08:40, answered 10:40, released by ana
    11:01, delivered 11:11. H2 held 12:02, first touched by ben 13:02, rejected by ben 13:32.
    H3 held 14:01, claimed by ana 14:11, still held.
    """
    make_user(engine, "ana", Role.CODER)
    make_user(engine, "ben", Role.CODER)
    with session_scope(engine) as session:
        for hour, verified, released, delivered in (
            (9, 1, 2, 3),
            (10, 1, 4, 6),
            (11, 2, 6, None),
        ):
            order = order_at(
                session,
                at(hour),
                status="delivered" if delivered else "released",
                released=at(hour, released),
                delivered=at(hour, delivered) if delivered else None,
            )
            verification(session, order, at(hour, verified), "verified")
            event(session, order, at(hour, released), "release-job", "released")

        h1 = order_at(session, at(8), status="delivered", released=at(11, 1), delivered=at(11, 11))
        verification(session, h1, at(8, 1), "held")
        event(session, h1, at(8, 31), "ana", "claimed")
        event(session, h1, at(8, 40), "ana", "query_created")
        assert h1.id is not None
        session.add(
            OfficeQuery(
                order_id=h1.id,
                created_at=at(8, 40),
                actor="ana",
                status="answered",
                question="Which diagnosis?",
                closed_at=at(10, 40),
            )
        )
        verification(session, h1, at(10, 45), "verified")
        event(session, h1, at(11, 1), "ana", "released")
        # Refused by the LIS, released again by ana the same day: still one order resolved.
        event(session, h1, at(16), "ana", "released")

        h2 = order_at(session, at(12), status="rejected")
        verification(session, h2, at(12, 2), "held")
        event(session, h2, at(13, 2), "ben", "contact_recorded")
        event(session, h2, at(13, 32), "ben", "rejected")

        h3 = order_at(session, at(14), status="held", office="South Clinic", assigned="ana")
        verification(session, h3, at(14, 1), "held")
        event(session, h3, at(14, 11), "ana", "claimed")

        before = order_at(session, at(23, day=DAY - timedelta(days=1)), status="held")
        verification(session, before, at(23, 5, day=DAY - timedelta(days=1)), "held")


def test_turnaround_by_stage_reports_automatic_and_held_orders_apart(engine: Engine) -> None:
    seed(engine)
    with Session(engine) as session:
        found = report(session, Period.of(DAY, DAY))
    assert found.orders == 6

    def stage(key: str, path: str) -> Figures:
        figures = stage_figures(found, key, path)
        assert figures is not None
        return figures

    assert stage("received_verified", "automatic") == Figures(3, 1.0, 1.8, 0)
    assert stage("received_verified", "held") == Figures(3, 1.0, 1.8, 0)
    # The complaint: automatic orders no longer drown the held ones.
    assert stage("received_released", "automatic") == Figures(3, 4.0, 5.6, 0)
    assert stage("received_released", "held") == Figures(1, 181.0, 181.0, 1)
    # First touch: a person's first event after the hold (the system's events do not count).
    assert stage("held_touched", "held") == Figures(3, 30.0, 54.0, 0)
    assert stage("query_answered", "held") == Figures(1, 120.0, 120.0, 0)
    # H3 is still held: not in the median, counted as not ended; H2 was rejected.
    assert stage("held_released", "held") == Figures(1, 180.0, 180.0, 1)
    assert stage("released_delivered", "automatic") == Figures(2, 1.5, 1.9, 1)
    assert stage("released_delivered", "held") == Figures(1, 10.0, 10.0, 0)


def test_first_touch_counts_only_what_a_person_did_after_the_hold(engine: Engine) -> None:
    """Verified at first, a contact recorded by ana, held at 15:30 by a re-verification,
    claimed at 15:50: the first touch is the claim, 20 minutes after the hold (not the
    contact before it)."""
    make_user(engine, "ana", Role.CODER)
    with session_scope(engine) as session:
        early = order_at(session, at(8), status="held")
        verification(session, early, at(8, 1), "held")  # another order held earlier
        order = order_at(session, at(15), status="held")
        verification(session, order, at(15, 1), "verified")
        event(session, order, at(15, 10), "ana", "contact_recorded")
        verification(session, order, at(15, 30), "held")
        event(session, order, at(15, 50), "ana", "claimed")
    with Session(engine) as session:
        found = report(session, Period.of(DAY, DAY))
    assert stage_figures(found, "held_touched", "held") == Figures(1, 20.0, 20.0, 1)


def test_daily_trend_and_holds_by_office_over_time(engine: Engine) -> None:
    seed(engine)
    with Session(engine) as session:
        found = report(session, Period.of(DAY - timedelta(days=1), DAY))
    first, second = found.days
    assert (first.day, first.received, first.automatic, first.held) == (
        DAY - timedelta(days=1),
        1,
        0,
        1,
    )
    assert (second.day, second.received, second.automatic, second.held) == (DAY, 6, 3, 3)
    assert (second.released, second.delivered) == (4, 3)
    assert second.automatic_released.median_minutes == 4.0
    assert second.held_released == Figures(1, 180.0, 180.0, 1)
    assert found.holds_by_office == [
        (DAY - timedelta(days=1), "North Clinic", 1),
        (DAY, "North Clinic", 2),
        (DAY, "South Clinic", 1),
    ]
    chart = trend_chart(found)
    series = {s.name: s for s in chart.series}
    assert [p.value for p in series["held"].points] == [1, 3]
    assert [p.value for p in series["released"].points] == [0, 4]
    assert [t.label for t in chart.ticks] == ["Nov 01", "Nov 02"]
    assert series["held"].points[1].label == "2026-11-02"
    assert "path=held" in series["held"].points[1].href


def test_coder_productivity_and_work_in_progress(engine: Engine) -> None:
    seed(engine)
    with Session(engine) as session:
        work = productivity(session, Period.of(DAY, DAY))
    by_day = {(d.coder, d.day): d for d in work.days}
    ana, ben = by_day[("ana", DAY)], by_day[("ben", DAY)]
    # ana first touched H1 at 08:31 and released it at 11:01; ben touched H2 13:02, rejected 13:32.
    assert (ana.resolved, ana.released, ana.rejected) == (1, 1, 0)
    assert ana.touch_to_resolution.median_minutes == 150.0
    assert (ben.resolved, ben.released, ben.rejected) == (1, 0, 1)
    assert ben.touch_to_resolution.median_minutes == 30.0
    # The release job's "released" events are not a person's work.
    assert {d.coder for d in work.days} == {"ana", "ben"}
    totals = {t.coder: t for t in work.totals}
    assert (totals["ana"].resolved, totals["ana"].claimed_now) == (1, 1)
    assert (totals["ben"].resolved, totals["ben"].claimed_now) == (1, 0)


def test_minutes_in_csv_are_plain_numbers_however_large() -> None:
    assert minutes_cell(132480.5).raw == "132480.5"  # 92 days: no exponent, nothing lost
    assert minutes_cell(1234567.0).raw == "1234567"
    assert minutes_cell(54.0).raw == "54"
    assert minutes_cell(None).raw == ""
    assert (minutes_cell(181.0).text, minutes_cell(45.0).text) == ("3.0 h", "45 min")


def manager_client(settings: Settings, engine: Engine) -> TestClient:
    make_user(engine, "maria", Role.MANAGER)
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {make_token(engine, 'maria')}"
    return client


def csv_rows(client: TestClient, url: str) -> list[dict[str, str]]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_csv_exports_numbers_as_numbers_with_units_in_the_header(
    settings: Settings, engine: Engine
) -> None:
    seed(engine)
    client = manager_client(settings, engine)
    query = f"start={DAY.isoformat()}&end={DAY.isoformat()}"
    stages = csv_rows(client, f"/dashboard/export/stages.csv?{query}")
    held_released = next(
        r for r in stages if r["stage"] == "held → released" and r["orders"] == "held"
    )
    assert held_released == {
        "stage": "held → released",
        "orders": "held",
        "count": "1",
        "median_minutes": "180",
        "p90_minutes": "180",
        "not_ended": "1",
    }
    touched = next(r for r in stages if r["stage"] == "held → first touch")
    assert float(touched["median_minutes"]) == 30.0
    never = next(r for r in stages if r["stage"] == "office query → answer")
    assert never["count"] == "1"
    daily = csv_rows(client, f"/dashboard/export/daily.csv?{query}")
    assert daily[0]["date"] == DAY.isoformat()
    assert daily[0]["received"] == "6"
    assert daily[0]["held_to_released_median_minutes"] == "180"
    coders = csv_rows(client, f"/dashboard/export/coders.csv?{query}")
    assert {r["coder"]: r["touch_to_resolution_median_minutes"] for r in coders} == {
        "ana": "150",
        "ben": "30",
    }
    by_day = csv_rows(client, f"/dashboard/export/holds_office_daily.csv?{query}")
    assert by_day == [
        {"date": DAY.isoformat(), "office": "North Clinic", "held_orders": "2"},
        {"date": DAY.isoformat(), "office": "South Clinic", "held_orders": "1"},
    ]
    offices = csv_rows(client, f"/dashboard/export/holds_office_range.csv?{query}")
    assert offices[0] == {
        "office": "North Clinic",
        "held_orders": "2",
        "busiest_day": DAY.isoformat(),
        "held_orders_busiest_day": "2",
    }
    for rows in (stages, daily, coders):
        for row in rows:
            for value in row.values():
                assert not value.endswith((" min", " h")), row


def test_the_range_section_applies_alone_and_explains_a_bad_range(
    settings: Settings, engine: Engine
) -> None:
    seed(engine)
    client = manager_client(settings, engine)
    day = DAY.isoformat()
    partial = client.get(
        f"/dashboard/turnaround?start={day}&end={day}", headers={"HX-Request": "true"}
    )
    assert partial.status_code == 200
    assert 'id="range-figures"' in partial.text
    assert "<h1>" not in partial.text  # the section alone, not the page
    assert "6 order(s) received 2026-11-02 to 2026-11-02" in partial.text
    assert partial.headers["HX-Replace-Url"] == f"/dashboard?window=24h&start={day}&end={day}"
    # Without HTMX (a bookmark, no script): the whole dashboard with that range.
    plain = client.get(f"/dashboard/turnaround?start={day}&end={day}", follow_redirects=False)
    assert plain.status_code == 303
    assert plain.headers["location"] == f"/dashboard?window=24h&start={day}&end={day}"
    # The dashboard loads the section after itself, for the range in its address.
    page = client.get(f"/dashboard?start={day}&end={day}")
    loads = f'hx-get="/dashboard/turnaround?window=24h&amp;start={day}&amp;end={day}"'
    assert loads in page.text
    assert f'id="range-start" name="start" value="{day}"' in page.text
    # An end before the start: said in words beside the dates, nothing pushed to the address.
    bad = client.get(
        f"/dashboard/turnaround?start={day}&end=2026-11-01", headers={"HX-Request": "true"}
    )
    assert bad.status_code == 200
    assert "The range ends before it starts" in bad.text
    assert "HX-Replace-Url" not in bad.headers
    too_long = client.get(
        "/dashboard/turnaround?start=2026-01-01&end=2026-11-01", headers={"HX-Request": "true"}
    )
    assert "pick at most 92 days" in too_long.text
    refused = client.get("/dashboard/export/stages.csv?start=nonsense")
    assert refused.status_code >= 400
    assert "start must be a date (YYYY-MM-DD)" in refused.text


def test_range_numbers_open_exactly_the_orders_behind_them(
    settings: Settings, engine: Engine
) -> None:
    seed(engine)
    client = manager_client(settings, engine)
    day = DAY.isoformat()
    base = f"/dashboard/orders?received_from={day}&received_to={day}"
    for params, expected in (
        ("", 6),
        ("&path=automatic", 3),
        ("&path=held", 3),
        ("&path=held&reached=released", 1),
        ("&path=automatic&reached=delivered", 2),
        ("&path=held&office=South+Clinic", 1),
    ):
        text = client.get(base + params).text
        assert text.count('<a href="/orders/') == expected, params
    claimed = client.get("/dashboard/orders?assigned=ana").text
    assert claimed.count('<a href="/orders/') == 1
    resolved = client.get(
        f"/dashboard/orders?resolved_by=ana&resolved_from={day}&resolved_to={day}"
    ).text
    assert resolved.count('<a href="/orders/') == 1
    # Every number of the range section lists exactly that many orders.
    section = client.get(
        f"/dashboard/turnaround?start={day}&end={day}", headers={"HX-Request": "true"}
    ).text
    links = {
        (html.unescape(href), int(number))
        for href, number in re.findall(r'<a href="(/dashboard/orders\?[^"]+)">(\d+)</a>', section)
    }
    assert len(links) > 15
    for href, number in sorted(links):
        assert client.get(href).text.count('<a href="/orders/') == number, href
