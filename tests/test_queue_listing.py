"""The queue listing: urgent first, filters, one search box, keyset pages, counts."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from labintake.config import Settings
from labintake.db import utcnow
from labintake.errors import WorkflowError
from labintake.models.orders import Order
from labintake.queue.listing import (
    DueFilter,
    PriorityFilter,
    QueueFilter,
    list_queue,
    next_in_queue,
    queue_counts,
)
from labintake.queue.ordering import QueueSort
from tests.factories import OrderSpec, held_order


def _seed(engine: Engine, settings: Settings, n: int) -> list[int]:
    return [
        held_order(
            engine,
            settings,
            OrderSpec(
                control_id=f"QL{i:04d}", placer=f"PL{i:04d}", family=f"Family{i}", mrn=f"M{i}"
            ),
        )
        for i in range(n)
    ]


def _set(engine: Engine, order_id: int, **values: object) -> None:
    with Session(engine) as session:
        session.execute(update(Order).where(col(Order.id) == order_id).values(**values))
        session.commit()


def test_default_sort_puts_the_most_overdue_first_and_pages_cover_all_without_repeats(
    engine: Engine, settings: Settings
) -> None:
    ids = _seed(engine, settings, 5)
    now = utcnow()
    for position, order_id in enumerate(ids):
        _set(engine, order_id, due_at=now + timedelta(hours=10 - 3 * position))
    with Session(engine) as session:
        first = list_queue(session, QueueFilter(), limit=2, now=now)
        assert [r.order_id for r in first.rows] == [ids[4], ids[3]]
        assert first.next_cursor is not None
        seen = [r.order_id for r in first.rows]
        cursor = first.next_cursor
        while cursor:
            page = list_queue(session, QueueFilter(), limit=2, cursor=cursor, now=now)
            seen += [r.order_id for r in page.rows]
            cursor = page.next_cursor
    assert seen == list(reversed(ids))


def test_rows_show_the_open_hold_reasons_office_and_time_left(
    engine: Engine, settings: Settings
) -> None:
    (order_id,) = _seed(engine, settings, 1)
    with Session(engine) as session:
        page = list_queue(session, QueueFilter())
    row = page.rows[0]
    assert row.order_id == order_id
    assert row.reasons == ("DX_NOT_BILLABLE",)
    assert row.office == "Smith & Jones Family Medicine"
    assert row.sender == "PRAIRIEFM"
    assert timedelta(hours=23) < row.time_left(page.now) <= timedelta(hours=24)


def test_filters_by_reason_assignee_due_and_age(engine: Engine, settings: Settings) -> None:
    a, b, c = _seed(engine, settings, 3)
    now = utcnow()
    _set(engine, a, assigned_to="ann", due_at=now - timedelta(days=2))
    _set(engine, b, due_at=now + timedelta(hours=1), created_at=now - timedelta(days=8))
    _set(engine, c, due_at=now + timedelta(days=3))
    with Session(engine) as session:

        def ids(**kw: object) -> list[int]:
            return [r.order_id for r in list_queue(session, QueueFilter(**kw), now=now).rows]  # type: ignore[arg-type]

        assert ids(assignee="ann") == [a]
        assert ids(assignee="unassigned") == [b, c]
        assert ids(due=DueFilter.OVERDUE) == [a]
        assert ids(due=DueFilter.TODAY) in ([a, b], [a])  # b is today unless past midnight UTC
        assert ids(min_age_days=7) == [b]
        assert ids(reason="DX_NOT_BILLABLE") == [a, b, c]
        assert ids(reason="DX_MISSING") == []
        assert ids(sender="PRAIRIEFM", office="Smith & Jones Family Medicine") == [a, b, c]
        counts = queue_counts(session, "ann", now)
    assert counts["all"] == 3
    assert counts["mine"] == 1
    assert counts["overdue"] == 1


def test_one_search_box_finds_by_name_mrn_placer_number_and_control_id(
    engine: Engine, settings: Settings
) -> None:
    ids = _seed(engine, settings, 3)
    with Session(engine) as session:

        def found(q: str) -> list[int]:
            return [r.order_id for r in list_queue(session, QueueFilter(search=q)).rows]

        assert found("family1") == [ids[1]]
        assert found("Family1, Mar") == [ids[1]]
        assert found("M2") == [ids[2]]
        assert found("PL0000") == [ids[0]]
        assert found("QL0001") == [ids[1]]
        assert found("nobody") == []
        assert found("50%") == []  # LIKE wildcards are taken literally


def test_released_orders_leave_the_queue_and_sort_orders_by_arrival(
    engine: Engine, settings: Settings
) -> None:
    a, b = _seed(engine, settings, 2)
    with Session(engine) as session:
        newest = list_queue(session, QueueFilter(), sort=QueueSort.NEWEST).rows
        assert [r.order_id for r in newest] == [b, a]
    _set(engine, a, status="released")
    with Session(engine) as session:
        assert [r.order_id for r in list_queue(session, QueueFilter()).rows] == [b]


def _forged(*values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        _forged("urgent", "2026-01-01T00:00:00+00:00", 10**20),
        _forged("urgent", "2026-01-01T00:00:00", 5),  # no time zone
        _forged("oldest", "2026-01-01T00:00:00+00:00", 5),  # another sort order
    ],
)
def test_forged_or_stale_cursors_are_refused_clearly(engine: Engine, cursor: str) -> None:
    with Session(engine) as session, pytest.raises(WorkflowError, match="bad page cursor"):
        list_queue(session, QueueFilter(), cursor=cursor)


def test_due_today_ends_at_midnight_in_the_coders_time_zone(
    engine: Engine, settings: Settings
) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    (order_id,) = _seed(engine, settings, 1)
    chicago = ZoneInfo("America/Chicago")
    now = datetime(2026, 3, 16, 20, 0, tzinfo=UTC)  # 15:00 in Chicago
    _set(engine, order_id, due_at=datetime(2026, 3, 17, 3, 0, tzinfo=UTC))  # 22:00 in Chicago
    with Session(engine) as session:

        def due_today(zone: object) -> list[int]:
            filters = QueueFilter(due=DueFilter.TODAY, zone=zone)  # type: ignore[arg-type]
            return [r.order_id for r in list_queue(session, filters, now=now).rows]

        assert due_today(chicago) == [order_id]
        assert due_today(UTC) == []
        assert queue_counts(session, "x", now, chicago)["today"] == 1


def test_stat_orders_come_first_then_by_due_time(engine: Engine, settings: Settings) -> None:
    routine = held_order(engine, settings, OrderSpec(control_id="PR1", placer="PR1", mrn="R1"))
    stat = held_order(
        engine, settings, OrderSpec(control_id="PR2", placer="PR2", mrn="R2", priority="S")
    )
    asap = held_order(
        engine, settings, OrderSpec(control_id="PR3", placer="PR3", mrn="R3", priority="A")
    )
    now = utcnow()
    _set(engine, routine, due_at=now - timedelta(days=3))  # the most overdue, yet routine
    _set(engine, stat, due_at=now + timedelta(hours=20))
    _set(engine, asap, due_at=now + timedelta(hours=1))
    with Session(engine) as session:
        rows = list_queue(session, QueueFilter(), now=now).rows
        assert [r.order_id for r in rows] == [stat, asap, routine]
        assert [r.priority for r in rows] == ["STAT", "ASAP", "routine"]
        due_first = list_queue(session, QueueFilter(), sort=QueueSort.DUE, now=now).rows
        assert [r.order_id for r in due_first] == [routine, asap, stat]
        only_stat = list_queue(session, QueueFilter(priority=PriorityFilter.STAT), now=now)
        assert [r.order_id for r in only_stat.rows] == [stat]
        urgent = list_queue(session, QueueFilter(priority=PriorityFilter.URGENT), now=now)
        assert {r.order_id for r in urgent.rows} == {stat, asap}


@pytest.mark.parametrize("sort", list(QueueSort))
def test_every_sort_pages_through_the_whole_queue_in_its_order(
    engine: Engine, settings: Settings, sort: QueueSort
) -> None:
    ids = _seed(engine, settings, 7)
    now = utcnow()
    for n, order_id in enumerate(ids):
        _set(
            engine,
            order_id,
            due_at=now + timedelta(hours=n % 3),
            priority_rank=n % 2 * 3,
            payer_company_name=["Medicare Part B", "Aetna", ""][n % 3],
            date_of_service=None if n == 4 else now.date() - timedelta(days=n % 4),
        )
    with Session(engine) as session:
        whole = [r.order_id for r in list_queue(session, QueueFilter(), sort=sort, now=now).rows]
        assert sorted(whole) == sorted(ids)
        paged: list[int] = []
        cursor = None
        while True:
            page = list_queue(session, QueueFilter(), sort=sort, limit=2, cursor=cursor, now=now)
            paged += [r.order_id for r in page.rows]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert paged == whole
        rows = list_queue(session, QueueFilter(), sort=sort, now=now).rows
        if sort is QueueSort.PAYER:
            assert [r.payer for r in rows] == sorted(r.payer for r in rows)
        if sort is QueueSort.DOS_DESC:
            dated = [r.date_of_service for r in rows if r.date_of_service is not None]
            assert dated == sorted(dated, reverse=True)
            assert rows[0].date_of_service is None  # none sorts last ascending, first descending


def test_search_ignores_case_and_accents_and_takes_either_name_order(
    engine: Engine, settings: Settings
) -> None:
    nunez = held_order(
        engine,
        settings,
        OrderSpec(control_id="SN1", placer="UXP7003", family="Núñez", given="Inés", mrn="N1"),
    )
    thors = held_order(
        engine,
        settings,
        OrderSpec(control_id="SN2", placer="PX2", family="Þórsdóttir", given="Björk", mrn="N2"),
    )
    roberts = held_order(
        engine,
        settings,
        OrderSpec(control_id="SN3", placer="PX3", family="Roberts", given="Carlos", mrn="N3"),
    )
    with Session(engine) as session:

        def found(query: str) -> set[int]:
            return {r.order_id for r in list_queue(session, QueueFilter(search=query)).rows}

        assert found("Nunez") == {nunez}
        assert found("NÚÑEZ, ines") == {nunez}
        assert found("Þórsdóttir") == {thors}
        assert found("uxp7003") == {nunez}
        assert found("Carlos Roberts") == {roberts}
        assert found("Roberts, Carlos") == {roberts}
        assert found("Roberts Carl") == {roberts}
        assert found("Carlos, Roberts") == set()  # a comma says the family name comes first


def test_the_office_filter_matches_part_of_the_name_in_any_case(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)  # office "Smith & Jones Family Medicine"
    with Session(engine) as session:
        assert [r.order_id for r in list_queue(session, QueueFilter(office="jones")).rows] == [
            order_id
        ]
        assert list_queue(session, QueueFilter(office="100%")).rows == []


def test_next_follows_the_list_the_coder_is_working(engine: Engine, settings: Settings) -> None:
    ids = _seed(engine, settings, 4)
    now = utcnow()
    for n, order_id in enumerate(ids):
        _set(engine, order_id, due_at=now + timedelta(hours=n))
    working = (QueueFilter(), QueueSort.NEWEST)
    with Session(engine) as session:
        assert next_in_queue(session, ids[3], "ann", now=now, working=working) == ids[2]
        # After the end of that list: mine, then unassigned, most urgent first.
        assert next_in_queue(session, ids[0], "ann", now=now, working=working) == ids[1]
        assert next_in_queue(session, ids[2], "ann", now=now) == ids[0]  # mine, then unassigned
