"""The queue screen as a coder sorts it: STAT badge, reasons in words, sortable headers."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.web.app import create_app
from tests.factories import OrderSpec, held_order, make_user
from tests.web_client import login


def test_the_queue_shows_stat_first_with_reasons_in_words_and_sortable_headers(
    settings: Settings, engine: Engine
) -> None:
    held_order(engine, settings)
    held_order(
        engine,
        settings,
        OrderSpec(control_id="ST1", placer="ST1", family="Okafor", mrn="S1", priority="S"),
    )
    make_user(engine, "ann", Role.CODER)
    client = TestClient(create_app(settings, engine))
    login(client, "ann")
    page = client.get("/queue?apply=1&col_dos=1&col_tests=1&col_payer=1").text
    assert page.index("Okafor") < page.index("Lindqvist")  # STAT before routine
    assert '<span class="badge badge-stat">STAT</span>' in page
    assert 'title="DX_NOT_BILLABLE">Diagnosis not billable</span>' in page
    assert '<th class="" aria-sort="ascending"><a href="/queue?' in page  # priority: the sort
    assert "sort=-dos" not in page  # date of service is not the sort yet: its link sorts up
    assert "sort=dos" in page
    by_dos = client.get("/queue?apply=1&sort=dos&col_dos=1").text
    assert 'aria-sort="ascending"><a href="/queue?apply=1&amp;sort=-dos' in by_dos
    stat_only = client.get("/queue?apply=1&priority=stat").text
    assert "Okafor" in stat_only
    assert "Lindqvist" not in stat_only
