"""A control id sent again with different content: kept as a conflict, answered AE.

Before, the second message silently got the first one's AA and was lost.
"""

from __future__ import annotations

import asyncio

from mllp_messages import err, msa, orm, stored_rows
from sqlalchemy.engine import Engine
from test_intake import KNOWN, PEER, run_intake

from labintake.config import Settings
from labintake.intake import Intake
from labintake.intake.digest import content_digest
from labintake.mllp.server import PeerIdentity


def test_same_control_id_with_other_content_is_kept_as_a_conflict_and_answered_ae(
    settings: Settings, engine: Engine
) -> None:
    first = orm("K1").encode()
    other = orm("K1", patient_name="SOMEONE^ELSE").encode()
    ack_first, ack_other, ack_again = run_intake(settings, engine, first, other, other)
    assert msa(ack_first)[1] == "AA"
    assert msa(ack_other)[1:3] == ["AE", "K1"]
    assert err(ack_other)[2] == "MSH^1^10"
    assert "already used by message" in ack_other.decode()
    assert ack_again == ack_other  # the same conflicting content again: its own duplicate
    original, conflict = stored_rows(engine)
    assert (original["status"], original["conflict_digest"]) == ("received", "")
    assert conflict["status"] == "rejected"
    assert conflict["conflict_of_id"] == original["id"]
    assert conflict["conflict_digest"] == content_digest(other)
    assert bytes(conflict["raw"]) == other
    assert f"already used by message {original['id']}" in str(conflict["error"])


def test_a_resend_with_a_new_timestamp_is_a_duplicate(settings: Settings, engine: Engine) -> None:
    first = orm("K2").encode()
    resent = first.replace(b"20250102030405||ORM", b"20250102039999||ORM").replace(b"\r", b"\r\n")
    assert resent != first
    ack_first, ack_resent = run_intake(settings, engine, first, resent)
    assert ack_resent == ack_first
    assert len(stored_rows(engine)) == 1


def test_conflict_answer_setting(settings: Settings, engine: Engine) -> None:
    settings_ar = settings.model_copy(update={"duplicate_conflict_ack": "AR"})
    first, conflict = run_intake(
        settings_ar, engine, orm("K3").encode(), orm("K3", patient_name="B^B").encode()
    )
    assert msa(conflict)[1] == "AR"
    old = settings.model_copy(update={"duplicate_conflict_ack": "original"})
    first, conflict = run_intake(
        old, engine, orm("K4").encode(), orm("K4", patient_name="B^B").encode()
    )
    assert conflict == first  # the old behaviour, but the conflict is still kept
    rows = [r for r in stored_rows(engine) if r["control_id"] == "K4"]
    assert [r["status"] for r in rows] == ["received", "rejected"]


def test_enhanced_mode_conflict_is_ce(settings: Settings, engine: Engine) -> None:
    _, conflict = run_intake(
        settings,
        engine,
        orm("K5", accept_ack="AL").encode(),
        orm("K5", accept_ack="AL", patient_name="B^B").encode(),
    )
    assert msa(conflict)[1] == "CE"


def test_conflicts_inside_one_commit(settings: Settings, engine: Engine) -> None:
    a = orm("K6").encode()
    b = orm("K6", patient_name="B^B").encode()
    c = orm("K6", patient_name="C^C").encode()

    async def go() -> list[bytes]:
        intake = Intake(settings, engine, interfaces=KNOWN)
        tasks = [asyncio.create_task(intake.handle(m, PEER)) for m in (a, b, a, c, b)]
        await asyncio.sleep(0.05)
        intake.start()  # all five land in one transaction
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            await asyncio.to_thread(intake.close)

    acks = asyncio.run(go())
    assert [msa(x)[1] for x in acks] == ["AA", "AE", "AA", "AE", "AE"]
    assert (acks[2], acks[4]) == (acks[0], acks[1])
    assert acks[3] != acks[1]
    rows = stored_rows(engine)
    assert [r["status"] for r in rows] == ["received", "rejected", "rejected"]
    assert rows[1]["conflict_of_id"] == rows[2]["conflict_of_id"] == rows[0]["id"]


def test_two_instances_store_one_original_and_one_conflict_per_content(
    settings: Settings, engine: Engine
) -> None:
    """Two instances on one database, the same messages, originals and conflicts, from a
    bound sender: the unique key holds whichever instance inserts first."""
    from labintake.db import make_engine

    settings = settings.model_copy(update={"enforce_sender_binding": True})
    from test_sender_binding import BOUND, EPIC_HOST

    other_engine = make_engine(settings.database_url)
    messages = [orm(f"TW{i}").encode() for i in range(20)]
    messages += [orm(f"TW{i}", patient_name="B^B").encode() for i in range(20)]

    async def go() -> tuple[list[bytes], list[bytes]]:
        async with (
            Intake(settings, engine, interfaces=BOUND) as first,
            Intake(settings, other_engine, interfaces=BOUND) as second,
        ):
            identity: PeerIdentity = EPIC_HOST
            a = asyncio.gather(*(first.handle(m, PEER, identity) for m in messages))
            b = asyncio.gather(*(second.handle(m, PEER, identity) for m in messages))
            return list(await a), list(await b)

    try:
        acks_first, acks_second = asyncio.run(go())
    finally:
        other_engine.dispose()
    rows = stored_rows(engine)
    assert len(rows) == 40
    assert {r["sender_identity"] for r in rows} == {"interface:northside-epic"}
    # Each content has one row, and both instances answer what that row holds.
    assert acks_first == acks_second
    for i in range(20):
        pair = sorted(r["status"] for r in rows if r["control_id"] == f"TW{i}")
        assert pair == ["received", "rejected"]


def test_managers_see_conflicts_and_binding_refusals_on_the_error_screen(
    settings: Settings, engine: Engine
) -> None:
    from fastapi.testclient import TestClient
    from test_sender_binding import BOUND, ELSEWHERE, EPIC_HOST

    from labintake.auth.roles import Role
    from labintake.web.app import create_app
    from tests.factories import make_user
    from tests.web_client import login

    bound = settings.model_copy(update={"enforce_sender_binding": True})

    async def go() -> None:
        async with Intake(bound, engine, interfaces=BOUND) as intake:
            await intake.handle(orm("SCR1").encode(), PEER, EPIC_HOST)
            await intake.handle(orm("SCR1", patient_name="B^B").encode(), PEER, EPIC_HOST)
            await intake.handle(orm("SCR2").encode(), "192.0.2.66:5000", ELSEWHERE)
            await intake.handle(orm("SCR3", version="2.9").encode(), PEER, EPIC_HOST)

    asyncio.run(go())
    make_user(engine, "meg", Role.MANAGER)
    client = TestClient(create_app(settings, engine))
    login(client, "meg")
    page = client.get("/messages/errors").text
    assert "control ids reused with other content, senders their connection did not prove (2)" in (
        page
    )
    assert "SCR1" in page
    assert "already used by message" in page
    assert "SCR2" in page
    assert "192.0.2.66:5000" in page
    assert "not among the interface&#39;s addresses" in page
    assert "SCR3" not in page  # rejected for its version: not a security refusal
