"""The screens: escaping of message data, audit of views, HTMX actions, stale warnings."""

from __future__ import annotations

import io
import re

import pypdf
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.models.users import AuditEntry, User
from labintake.web.app import create_app
from tests.factories import OrderSpec, held_order, make_user
from tests.web_client import csrf_of, login, row_version_of

HOSTILE = OrderSpec(
    control_id="EVIL1",
    placer="EV1",
    family="<script>alert(1)</script>",
    given='"><img src=x onerror=alert(2)>',
    note="<img src=x onerror=alert(3)>",
)


def _signed_in(
    settings: Settings, engine: Engine, name: str, role: Role = Role.CODER
) -> tuple[TestClient, str]:
    make_user(engine, name, role)
    client = TestClient(create_app(settings, engine))
    return client, login(client, name)


def test_hostile_message_text_is_escaped_on_the_queue_and_order_pages(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings, HOSTILE)
    client, _ = _signed_in(settings, engine, "ann")
    for path in ("/queue", f"/orders/{order_id}"):
        html = client.get(path).text
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # The raw message view shows the NTE text too, escaped.
    assert "&lt;img src=x onerror=alert(3)&gt;" in client.get(f"/orders/{order_id}").text


def test_order_page_names_raw_fields_and_every_view_is_audited(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    client, _ = _signed_in(settings, engine, "ann")
    html = client.get(f"/orders/{order_id}").text
    assert "Patient Name" in html  # field names from hl7apy's reference tables
    assert "PID-5" in html
    assert "DX_NOT_BILLABLE" in html
    assert "(515)555-0177" in html
    with Session(engine) as session:
        views = session.exec(select(AuditEntry).where(AuditEntry.action == "view_order")).all()
        assert [(v.actor, v.order_id) for v in views] == [("ann", order_id)]


def test_audit_trail_is_shown_to_managers_only(settings: Settings, engine: Engine) -> None:
    order_id = held_order(engine, settings)
    coder, _ = _signed_in(settings, engine, "ann")
    assert "Audit trail" not in coder.get(f"/orders/{order_id}").text
    manager, _ = _signed_in(settings, engine, "meg", Role.MANAGER)
    assert "Audit trail" in manager.get(f"/orders/{order_id}").text


def test_htmx_contact_then_stale_form_shows_the_fresh_state_with_a_warning(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    ann, ann_csrf = _signed_in(settings, engine, "ann")
    ben, ben_csrf = _signed_in(settings, engine, "ben")
    ann_version = row_version_of(ann.get(f"/orders/{order_id}").text)
    ben_version = row_version_of(ben.get(f"/orders/{order_id}").text)
    form = {"row_version": str(ann_version), "channel": "phone", "outcome": "no_answer"}
    saved = ann.post(
        f"/orders/{order_id}/contacts",
        data={**form, "csrf_token": ann_csrf, "action_key": "a1"},
        headers={"HX-Request": "true"},
    )
    # The order now waits for the office: the screen moves on (nothing else is queued here).
    assert saved.headers["HX-Redirect"] == "/queue?done=parked"
    stale = ben.post(
        f"/orders/{order_id}/reject",
        data={"row_version": str(ben_version), "reason": "dup", "csrf_token": ben_csrf},
        headers={"HX-Request": "true"},
    )
    assert stale.headers["HX-Redirect"] == f"/orders/{order_id}?stale=1"
    page = ben.get(f"/orders/{order_id}?stale=1").text
    assert "Someone else changed this order" in page
    assert "ann: contact recorded" in page
    assert row_version_of(page) == ann_version + 1


def test_a_rule_refusal_is_shown_in_place(settings: Settings, engine: Engine) -> None:
    order_id = held_order(engine, settings)
    client, csrf = _signed_in(settings, engine, "ann")
    version = row_version_of(client.get(f"/orders/{order_id}").text)
    response = client.post(
        f"/orders/{order_id}/release",
        data={"row_version": str(version), "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 409
    assert response.headers["HX-Retarget"] == "#flash"
    assert "open hold findings" in response.text


def test_queue_filters_are_saved_per_user(settings: Settings, engine: Engine) -> None:
    held_order(engine, settings)
    client, _ = _signed_in(settings, engine, "ann")
    client.get("/queue", params={"apply": "1", "reason": "DX_MISSING", "col_office": "1"})
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == "ann")).one()
        assert user.preferences["queue"]["filters"]["reason"] == "DX_MISSING"
        assert user.preferences["queue"]["columns"] == ["office"]
    page = client.get("/queue").text
    assert re.search(r'<option value="DX_MISSING" selected>', page)
    assert "Nothing in the queue matches" in page


def test_office_query_page_and_pdf(settings: Settings, engine: Engine) -> None:
    settings.lab_name = "Prairie Reference Laboratory"
    settings.lab_fax = "(515) 555-0199"
    order_id = held_order(engine, settings, OrderSpec(family="Þórsdóttir", given="Guðrún"))
    client, csrf = _signed_in(settings, engine, "ann")
    version = row_version_of(client.get(f"/orders/{order_id}").text)
    client.post(
        f"/orders/{order_id}/queries", data={"row_version": str(version), "csrf_token": csrf}
    )
    page = client.get(f"/orders/{order_id}").text
    link = re.search(rf'href="(/orders/{order_id}/queries/\d+)"', page)
    assert link is not None
    query = client.get(link.group(1)).text
    assert "Prairie Reference Laboratory" in query
    assert "by fax to (515) 555-0199" in query
    assert "HEMOGLOBIN A1C (as sent: 83036)" in query  # the tests are listed
    assert "Clinically undetermined" in query
    assert "Other (please describe)" in query
    assert "E11.9" not in query  # never proposes a code
    assert "Medicare" not in query  # never mentions payment or payers
    pdf = client.get(link.group(1) + "/pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Prairie Reference Laboratory" in text
    assert "Þórsdóttir, Guðrún" in text
    assert "From: Ann, coding" in text

    # Pressing "write query" again shows the open query instead of writing a second one.
    version = row_version_of(page)
    again = client.post(
        f"/orders/{order_id}/queries", data={"row_version": str(version), "csrf_token": csrf}
    ).text
    assert "An open query already asks about these findings" in again
    assert len(re.findall(rf'href="/orders/{order_id}/queries/\d+"', again)) == 1


def test_csrf_token_is_in_every_signed_in_page(settings: Settings, engine: Engine) -> None:
    client, csrf = _signed_in(settings, engine, "ann")
    assert csrf_of(client.get("/queue").text) == csrf
    assert len(csrf) > 30


def test_icd10_lookup_fragment_and_necessity_per_test(settings: Settings, engine: Engine) -> None:
    order_id = held_order(engine, settings)
    client, _ = _signed_in(settings, engine, "ann")
    fragment = client.get("/icd10", params={"q": "E11.6"}, headers={"HX-Request": "true"}).text
    assert "E11.65" in fragment
    assert "<html" not in fragment
    page = client.get(f"/orders/{order_id}").text
    assert 'class="nec nec-' in page  # the HbA1c line shows its medical-necessity result


def test_a_manager_assigns_an_order_to_a_coder(settings: Settings, engine: Engine) -> None:
    order_id = held_order(engine, settings)
    make_user(engine, "ann", Role.CODER)
    client, csrf = _signed_in(settings, engine, "meg", Role.MANAGER)
    page = client.get(f"/orders/{order_id}").text
    assert "Assign to" in page
    client.post(
        f"/orders/{order_id}/assign",
        data={"row_version": str(row_version_of(page)), "assignee": "ann", "csrf_token": csrf},
    )
    assert "assigned to <b>ann</b>" in client.get(f"/orders/{order_id}").text


def test_seeing_the_queue_is_audited_with_the_orders_shown(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    client, _ = _signed_in(settings, engine, "ann")
    client.get("/queue", params={"q": "Lindqvist"})
    with Session(engine) as session:
        entry = session.exec(
            select(AuditEntry).where(AuditEntry.action == "view_order_list")
        ).all()[-1]
    assert (entry.actor, entry.via) == ("ann", "web")
    assert entry.after["ids"] == [order_id]
    assert entry.after["search"] == "Lindqvist"


def test_load_more_continues_the_queue_where_the_page_ended(
    settings: Settings, engine: Engine
) -> None:
    ids = [
        held_order(engine, settings, OrderSpec(control_id=f"LM{i}", placer=f"LM{i}"))
        for i in range(3)
    ]
    client, _ = _signed_in(settings, engine, "ann")
    page = client.get("/queue", params={"apply": "1", "limit": "2", "sort": "oldest"}).text
    shown = [int(i) for i in re.findall(r'data-href="/orders/(\d+)"', page)]
    assert shown == ids[:2]
    more = re.search(r'hx-get="([^"]+)"', page.split('id="more"')[1])
    assert more is not None
    rest = client.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"}).text
    assert [int(i) for i in re.findall(r'data-href="/orders/(\d+)"', rest)] == ids[2:]
    assert 'id="more"' not in rest
    assert "<html" not in rest


def test_after_the_last_order_the_queue_says_what_happened(
    settings: Settings, engine: Engine
) -> None:
    client, _ = _signed_in(settings, engine, "ann")
    page = client.get("/queue", params={"done": "released"}).text
    assert "Order released to the lab. Nothing else is waiting in your queue." in page


def test_claiming_several_orders_at_once_skips_the_ones_changed_meanwhile(
    settings: Settings, engine: Engine
) -> None:
    first = held_order(engine, settings, OrderSpec(control_id="B1", placer="B1"))
    second = held_order(engine, settings, OrderSpec(control_id="B2", placer="B2"))
    client, csrf = _signed_in(settings, engine, "ann")
    page = client.get("/queue").text
    picks = re.findall(r'name="pick" value="([^"]+)"', page)
    assert len(picks) == 2
    other, other_csrf = _signed_in(settings, engine, "ben")
    version = row_version_of(other.get(f"/orders/{second}").text)
    other.post(
        f"/orders/{second}/assign",
        data={"row_version": str(version), "assignee": "me", "csrf_token": other_csrf},
    )
    result = client.post(
        "/queue/claim", data={"pick": picks, "csrf_token": csrf, "action_key": "bulk1"}
    )
    assert "Claimed 1 order. 1 skipped: see below." in result.text
    assert "1 changed by someone meanwhile, or no longer in the queue" in result.text
    assert f'<a href="/orders/{second}">order {second}</a>' in result.text
    assert [int(i) for i in re.findall(r'data-href="/orders/(\d+)"', result.text)] == [first]


def test_a_coder_acting_on_an_order_another_coder_claimed_is_told_whose_it_is(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    ann, ann_csrf = _signed_in(settings, engine, "ann")
    version = row_version_of(ann.get(f"/orders/{order_id}").text)
    ann.post(
        f"/orders/{order_id}/assign",
        data={"row_version": str(version), "assignee": "ann", "csrf_token": ann_csrf},
    )
    ben, ben_csrf = _signed_in(settings, engine, "ben")
    version = row_version_of(ben.get(f"/orders/{order_id}").text)
    refused = ben.post(
        f"/orders/{order_id}/reject",
        data={"row_version": str(version), "reason": "not ours", "csrf_token": ben_csrf},
    )
    assert refused.status_code == 403
    assert "only ann or a manager may act on it" in refused.text
    flash = ben.post(
        f"/orders/{order_id}/reject",
        data={"row_version": str(version), "reason": "not ours", "csrf_token": ben_csrf},
        headers={"HX-Request": "true"},
    )
    assert "only ann or a manager may act on it" in flash.text
    assert flash.headers["HX-Retarget"] == "#flash"
    picks = [f"{order_id}:{version}"]
    bulk = ben.post("/queue/claim", data={"pick": picks, "csrf_token": ben_csrf})
    assert "Claimed 0" not in bulk.text
    assert "1 order not claimed (none of those ticked)" in bulk.text
    assert "1 held by another coder" in bulk.text
    assert "(held by Ann since" in bulk.text
    assert "Take over this order from Ann since" in bulk.text
    assert "held" in ann.get(f"/orders/{order_id}").text


def test_the_time_zone_cookie_is_used_when_valid_and_ignored_when_not(
    settings: Settings, engine: Engine
) -> None:
    held_order(engine, settings)
    client, _ = _signed_in(settings, engine, "ann")
    for zone in ("America/Chicago", "Not/AZone", "../../etc/passwd", "x" * 100):
        client.cookies.set("tz", zone)
        assert client.get("/queue/counts", params={"due": "today"}).status_code == 200
        assert client.get("/queue", params={"due": "today"}).status_code == 200
