"""Users administered on the screen: only admins; the CLI's rules (password policy, sessions
and tokens ended by a change); every change audited with who did what to whom; refusals
beside the field, in sentences; never no active administrator left."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.auth.roles import Role
from labintake.auth.tokens import create_token
from labintake.config import Settings
from labintake.models.users import ApiToken, AuditEntry, User, WebSession
from labintake.web.app import create_app
from tests.factories import PASSWORD, make_token, make_user
from tests.web_client import csrf_of, login

NEW_PASSWORD = "a brand new passphrase"
HX = {"HX-Request": "true"}


def _admin(settings: Settings, engine: Engine, name: str = "ada") -> tuple[TestClient, str]:
    make_user(engine, name, Role.ADMIN)
    client = TestClient(create_app(settings, engine))
    return client, login(client, name)


def _user(engine: Engine, name: str) -> User:
    with Session(engine) as session:
        return session.exec(select(User).where(User.username == name)).one()


def _audit(engine: Engine, action: str) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditEntry).where(AuditEntry.action == action).order_by(col(AuditEntry.id))
            )
        )


def _live_sessions_and_tokens(engine: Engine, name: str) -> tuple[int, int]:
    user_id = _user(engine, name).id
    with Session(engine) as session:
        sessions = session.exec(select(WebSession).where(WebSession.user_id == user_id)).all()
        tokens = session.exec(
            select(ApiToken).where(ApiToken.user_id == user_id, col(ApiToken.revoked_at).is_(None))
        ).all()
    return len(sessions), len(tokens)


def _is_on(page: str, retarget: str) -> bool:
    """The page has the element an error was retargeted to: `#form [data-error-for="f"]`."""
    found = re.fullmatch(r'#([\w-]+) \[data-error-for="(\w+)"\]', retarget)
    assert found is not None, retarget
    form = re.search(rf'<form id="{found.group(1)}".*?</form>', page, re.S)
    return form is not None and f'data-error-for="{found.group(2)}"' in form.group(0)


def _sign_in(settings: Settings, engine: Engine, name: str, password: str) -> TestClient:
    client = TestClient(create_app(settings, engine))
    login(client, name, password)
    return client


def test_only_admins_see_the_users_menu_and_screen(settings: Settings, engine: Engine) -> None:
    admin, _ = _admin(settings, engine)
    assert 'href="/admin/users"' in admin.get("/queue").text
    for name, role in (("cy", Role.CODER), ("mo", Role.MANAGER)):
        make_user(engine, name, role)
        other = _sign_in(settings, engine, name, PASSWORD)
        assert 'href="/admin/users"' not in other.get("/queue").text
        assert other.get("/admin/users").status_code == 403
        csrf = csrf_of(other.get("/queue").text)
        refused = other.post(
            f"/admin/users/{_user(engine, name).id}/role",
            data={"csrf_token": csrf, "role": "admin"},
        )
        assert refused.status_code == 403
        assert _user(engine, name).role == role.value


def test_the_list_shows_role_status_lockout_last_sign_in_and_live_tokens(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "cy", Role.CODER)
    make_user(engine, "lou", Role.MANAGER)
    make_token(engine, "lou")
    with Session(engine) as session:
        lou = session.exec(select(User).where(User.username == "lou")).one()
        lou.failed_logins = 5
        lou.locked_until = lou.created_at.replace(year=2999)
        session.add(lou)
        session.commit()
    admin, _ = _admin(settings, engine)
    page = admin.get("/admin/users").text
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"<tr>\s*<td><a [^>]*>(\w+)</a>.*?</tr>", page, re.S)
    }
    assert set(rows) == {"ada", "cy", "lou"}
    assert "admin" in rows["ada"]
    assert "never" not in rows["ada"]
    assert "never" in rows["cy"]
    assert "locked until" in rows["lou"]
    assert "locked until" not in rows["cy"]
    assert re.search(r'class="num">1</td>', rows["lou"])
    assert re.search(r'class="num">0</td>', rows["cy"])


def test_adding_a_user_applies_the_password_policy_beside_the_field_and_keeps_nothing(
    settings: Settings, engine: Engine
) -> None:
    admin, csrf = _admin(settings, engine)
    form = {
        "csrf_token": csrf,
        "username": "nell",
        "display_name": "Nell Ortiz",
        "role": "coder",
        "password": "short",
        "password_repeat": "short",
    }
    headers = {**HX, "HX-Trigger": "add-user"}
    good = {"password": PASSWORD, "password_repeat": PASSWORD}
    refusals: list[tuple[dict[str, str], str, str | None]] = [
        ({}, "password", "The password must have at least 10 characters."),
        (
            {**good, "password_repeat": PASSWORD + "x"},
            "password_repeat",
            "The two passwords differ",
        ),
        (
            {**good, "username": "nell o"},
            "username",
            "A username is 1-100 characters without spaces.",
        ),
        ({**good, "username": "ada"}, "username", None),  # taken by the fixture's admin
    ]
    for changes, field, sentence in refusals:
        refused = admin.post("/admin/users", data={**form, **changes}, headers=headers)
        assert refused.status_code == 409, changes
        target = f'#add-user [data-error-for="{field}"]'
        assert refused.headers["HX-Retarget"] == target, changes
        assert _is_on(admin.get("/admin/users").text, target), changes
        if sentence is not None:
            assert sentence in refused.text, changes
    with Session(engine) as session:
        assert session.exec(select(User).where(User.username == "nell")).first() is None
    assert _audit(engine, "user_added")[-1].after["user"] == "ada"  # only the fixture's


def test_an_added_user_chooses_a_new_password_at_the_first_sign_in(
    settings: Settings, engine: Engine
) -> None:
    admin, csrf = _admin(settings, engine)
    added = admin.post(
        "/admin/users",
        data={
            "csrf_token": csrf,
            "username": "nell",
            "display_name": "Nell Ortiz",
            "role": "manager",
            "password": PASSWORD,
            "password_repeat": PASSWORD,
            "must_change": "1",
        },
        follow_redirects=False,
    )
    assert added.status_code == 303
    nell = _user(engine, "nell")
    assert added.headers["location"] == f"/admin/users/{nell.id}?done=added"
    assert (nell.role, nell.display_name, nell.must_change_password) == (
        "manager",
        "Nell Ortiz",
        True,
    )
    entry = _audit(engine, "user_added")[-1]
    assert (entry.actor, entry.via, entry.after["user"], entry.after["role"]) == (
        "ada",
        "web",
        "nell",
        "manager",
    )

    client = TestClient(create_app(settings, engine))
    csrf_nell = login(client, "nell")  # lands on the password page
    queue = client.get("/queue", follow_redirects=False)
    assert (queue.status_code, queue.headers["location"]) == (303, "/account/password")
    assert client.get("/dashboard", headers=HX).headers["HX-Redirect"] == "/account/password"
    headers = {**HX, "HX-Trigger": "change-password"}
    wrong = client.post(
        "/account/password",
        data={
            "csrf_token": csrf_nell,
            "current_password": "not it at all",
            "new_password": NEW_PASSWORD,
            "new_password_repeat": NEW_PASSWORD,
        },
        headers=headers,
    )
    assert wrong.headers["HX-Retarget"] == '#change-password [data-error-for="current_password"]'
    assert _is_on(client.get("/account/password").text, wrong.headers["HX-Retarget"])
    assert "That is not your current password." in wrong.text
    same = client.post(
        "/account/password",
        data={
            "csrf_token": csrf_nell,
            "current_password": PASSWORD,
            "new_password": PASSWORD,
            "new_password_repeat": PASSWORD,
        },
        headers=headers,
    )
    assert same.headers["HX-Retarget"] == '#change-password [data-error-for="new_password"]'
    assert _is_on(client.get("/account/password").text, same.headers["HX-Retarget"])
    changed = client.post(
        "/account/password",
        data={
            "csrf_token": csrf_nell,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_repeat": NEW_PASSWORD,
        },
        follow_redirects=False,
    )
    assert changed.status_code == 303
    assert changed.headers["location"] == "/account/password?changed=1"
    # A new session replaced the ended one: still signed in, and the queue is open now.
    assert client.get("/queue").status_code == 200
    assert _user(engine, "nell").must_change_password is False
    assert _live_sessions_and_tokens(engine, "nell") == (1, 0)
    assert _audit(engine, "password_changed")[-1].actor == "nell"
    _sign_in(settings, engine, "nell", NEW_PASSWORD)


def test_a_role_change_ends_the_users_sessions_and_tokens_and_is_audited(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "cy", Role.CODER)
    token = make_token(engine, "cy")
    cy = _sign_in(settings, engine, "cy", PASSWORD)
    admin, csrf = _admin(settings, engine)
    cy_id = _user(engine, "cy").id
    response = admin.post(
        f"/admin/users/{cy_id}/role",
        data={"csrf_token": csrf, "role": "manager"},
        follow_redirects=False,
    )
    assert response.headers["location"] == f"/admin/users/{cy_id}?done=role"
    assert _user(engine, "cy").role == "manager"
    assert _live_sessions_and_tokens(engine, "cy") == (0, 0)
    assert cy.get("/queue", follow_redirects=False).headers["location"].startswith("/login")
    assert admin.get("/api/orders", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    entry = _audit(engine, "role_changed")[-1]
    assert (entry.actor, entry.via, entry.before, entry.after) == (
        "ada",
        "web",
        {"user": "cy", "role": "coder"},
        {"role": "manager", "sessions_ended": 1, "tokens_revoked": 1},
    )
    page = admin.get(f"/admin/users/{cy_id}?done=role").text
    assert "Role changed; the user&#39;s sessions and API tokens have ended." in page
    history = page[page.index("<h2>History</h2>") :]
    rows = re.findall(r"<tr>\s*<td>.*?</td>\s*<td>(.*?)</td>\s*<td>\s*(.*?)\s*</td>", history, re.S)
    assert rows == [
        ("ada", "Role changed from coder to manager; 1 session(s) ended, 1 token(s) revoked."),
        ('cli <span class="muted">(cli)</span>', "Added as coder."),
    ]
    bad = admin.post(
        f"/admin/users/{cy_id}/role",
        data={"csrf_token": csrf, "role": "owner"},
        headers={**HX, "HX-Trigger": "change-role"},
    )
    assert bad.headers["HX-Retarget"] == '#change-role [data-error-for="role"]'
    assert _is_on(admin.get(f"/admin/users/{cy_id}").text, bad.headers["HX-Retarget"])
    assert "Choose a role: coder, manager or admin." in bad.text


def test_a_temporary_password_is_shown_once_and_must_be_changed_at_sign_in(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "cy", Role.CODER)
    make_token(engine, "cy")
    with Session(engine) as session:
        cy = session.exec(select(User).where(User.username == "cy")).one()
        cy.failed_logins, cy.locked_until = 5, cy.created_at.replace(year=2999)
        session.add(cy)
        session.commit()
    admin, csrf = _admin(settings, engine)
    cy_id = _user(engine, "cy").id
    reset = admin.post(
        f"/admin/users/{cy_id}/password", data={"csrf_token": csrf, "mode": "temporary"}
    )
    assert reset.status_code == 200
    found = re.search(r'id="temporary-password">([a-z0-9-]+)<', reset.text)
    assert found is not None
    temporary = found.group(1)
    assert len(temporary.replace("-", "")) >= 16
    assert temporary not in admin.get(f"/admin/users/{cy_id}").text  # shown once
    after = _user(engine, "cy")
    assert (after.must_change_password, after.locked_until, after.failed_logins) == (True, None, 0)
    assert _live_sessions_and_tokens(engine, "cy") == (0, 0)
    entry = _audit(engine, "password_changed")[-1]
    assert (entry.actor, entry.before["user"], entry.after["must_change"]) == ("ada", "cy", True)
    assert temporary not in str(entry.before) + str(entry.after)
    client = TestClient(create_app(settings, engine))
    login(client, "cy", temporary)
    assert client.get("/queue", follow_redirects=False).headers["location"] == "/account/password"
    # Through HTMX the answer is the page's content, swapped into <main>, with a new password.
    again = admin.post(
        f"/admin/users/{cy_id}/password",
        data={"csrf_token": csrf, "mode": "temporary"},
        headers={**HX, "HX-Trigger": "reset-password"},
    )
    assert again.status_code == 200
    assert "<html" not in again.text
    second = re.search(r'id="temporary-password">([a-z0-9-]+)<', again.text)
    assert second is not None
    assert second.group(1) != temporary


def test_a_password_the_admin_types_follows_the_policy_and_may_skip_the_change(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "cy", Role.CODER)
    admin, csrf = _admin(settings, engine)
    cy_id = _user(engine, "cy").id
    form = {"csrf_token": csrf, "mode": "chosen", "password": "short", "password_repeat": "short"}
    short = admin.post(
        f"/admin/users/{cy_id}/password",
        data=form,
        headers={**HX, "HX-Trigger": "reset-password"},
    )
    assert short.headers["HX-Retarget"] == '#reset-password [data-error-for="password"]'
    assert _is_on(admin.get(f"/admin/users/{cy_id}").text, short.headers["HX-Retarget"])
    set_ = admin.post(
        f"/admin/users/{cy_id}/password",
        data={**form, "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD},
        follow_redirects=False,
    )
    assert set_.headers["location"] == f"/admin/users/{cy_id}?done=password"
    assert _user(engine, "cy").must_change_password is False
    cy = _sign_in(settings, engine, "cy", NEW_PASSWORD)
    assert cy.get("/queue").status_code == 200


def test_deactivating_ends_access_until_reactivated_both_audited(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "cy", Role.CODER)
    token = make_token(engine, "cy")
    cy = _sign_in(settings, engine, "cy", PASSWORD)
    admin, csrf = _admin(settings, engine)
    cy_id = _user(engine, "cy").id
    off = admin.post(
        f"/admin/users/{cy_id}/deactivate", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert off.headers["location"] == f"/admin/users/{cy_id}?done=deactivated"
    assert _user(engine, "cy").active is False
    assert _live_sessions_and_tokens(engine, "cy") == (0, 0)
    assert cy.get("/queue", follow_redirects=False).status_code == 303
    assert admin.get("/api/orders", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert "deactivated" in admin.get("/admin/users").text
    on = admin.post(
        f"/admin/users/{cy_id}/reactivate", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert on.headers["location"] == f"/admin/users/{cy_id}?done=reactivated"
    _sign_in(settings, engine, "cy", PASSWORD)
    entries = _audit(engine, "user_deactivated") + _audit(engine, "user_reactivated")
    assert [(e.actor, e.via, e.before["user"]) for e in entries] == [
        ("ada", "web", "cy"),
        ("ada", "web", "cy"),
    ]
    assert entries[0].after["tokens_revoked"] == 1


def test_the_last_active_admin_can_neither_demote_nor_deactivate_themselves(
    settings: Settings, engine: Engine
) -> None:
    admin, csrf = _admin(settings, engine)
    ada_id = _user(engine, "ada").id
    demote = admin.post(
        f"/admin/users/{ada_id}/role",
        data={"csrf_token": csrf, "role": "manager"},
        headers={**HX, "HX-Trigger": "change-role"},
    )
    assert demote.status_code == 409
    assert demote.headers["HX-Retarget"] == '#change-role [data-error-for="role"]'
    assert _is_on(admin.get(f"/admin/users/{ada_id}").text, demote.headers["HX-Retarget"])
    assert (
        "There must be an active administrator and ada is the last one; make another user "
        "an administrator first." in demote.text
    )
    off = admin.post(
        f"/admin/users/{ada_id}/deactivate",
        data={"csrf_token": csrf},
        headers={**HX, "HX-Trigger": "deactivate"},
    )
    assert off.status_code == 409
    assert off.headers["HX-Retarget"] == '#deactivate [data-error-for="active"]'
    assert _is_on(admin.get(f"/admin/users/{ada_id}").text, off.headers["HX-Retarget"])
    assert _user(engine, "ada").role == "admin"
    assert _user(engine, "ada").active
    # An inactive admin does not count: the one active admin stays.
    make_user(engine, "old", Role.ADMIN)
    admin.post(f"/admin/users/{_user(engine, 'old').id}/deactivate", data={"csrf_token": csrf})
    assert (
        admin.post(
            f"/admin/users/{ada_id}/role", data={"csrf_token": csrf, "role": "coder"}
        ).status_code
        == 409
    )
    # With a second active admin, ada may step down: her own session ends with it.
    make_user(engine, "bo", Role.ADMIN)
    stepped = admin.post(
        f"/admin/users/{ada_id}/role",
        data={"csrf_token": csrf, "role": "coder"},
        follow_redirects=False,
    )
    assert stepped.headers["location"] == "/login"
    assert _user(engine, "ada").role == "coder"
    assert admin.get("/admin/users", follow_redirects=False).status_code == 303


def test_tokens_are_listed_without_their_secret_and_revoked_one_by_one(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "feed", Role.CODER)
    with Session(engine) as session:
        kept = create_token(session, "feed", "LIS result feed")
        gone = create_token(session, "feed", "old laptop script")
        session.commit()
    admin, csrf = _admin(settings, engine)
    assert admin.get("/api/orders", headers={"Authorization": f"Bearer {kept}"}).status_code == 200
    feed_id = _user(engine, "feed").id
    page = admin.get(f"/admin/users/{feed_id}").text
    assert "LIS result feed" in page
    assert "old laptop script" in page
    assert kept not in page
    assert gone not in page
    assert kept[:12] in page
    with Session(engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.prefix == gone[:12])).one()
        other = session.exec(select(ApiToken).where(ApiToken.prefix == kept[:12])).one()
    assert other.last_used_at is not None  # used above, and shown
    revoked = admin.post(
        f"/admin/users/{feed_id}/tokens/{row.id}/revoke",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert revoked.headers["location"] == f"/admin/users/{feed_id}?done=revoked"
    assert admin.get("/api/orders", headers={"Authorization": f"Bearer {gone}"}).status_code == 401
    assert admin.get("/api/orders", headers={"Authorization": f"Bearer {kept}"}).status_code == 200
    entry = _audit(engine, "token_revoked")[-1]
    assert (entry.actor, entry.before) == (
        "ada",
        {"user": "feed", "token": gone[:12], "name": "old laptop script"},
    )
    # A token of another user, through this user's page: not found, nothing revoked.
    make_user(engine, "zed", Role.CODER)
    zed_token = make_token(engine, "zed")
    with Session(engine) as session:
        zed_row = session.exec(select(ApiToken).where(ApiToken.prefix == zed_token[:12])).one()
    wrong = admin.post(
        f"/admin/users/{feed_id}/tokens/{zed_row.id}/revoke", data={"csrf_token": csrf}
    )
    assert wrong.status_code == 404
    assert (
        admin.get("/api/orders", headers={"Authorization": f"Bearer {zed_token}"}).status_code
        == 200
    )


def test_a_lockout_is_lifted_on_the_screen_and_audited(settings: Settings, engine: Engine) -> None:
    make_user(engine, "cy", Role.CODER)
    with Session(engine) as session:
        cy = session.exec(select(User).where(User.username == "cy")).one()
        cy.failed_logins, cy.locked_until = 5, cy.created_at.replace(year=2999)
        session.add(cy)
        session.commit()
    admin, csrf = _admin(settings, engine)
    cy_id = _user(engine, "cy").id
    assert "Lift the lockout" in admin.get(f"/admin/users/{cy_id}").text
    admin.post(f"/admin/users/{cy_id}/unlock", data={"csrf_token": csrf})
    assert (_user(engine, "cy").failed_logins, _user(engine, "cy").locked_until) == (0, None)
    assert _audit(engine, "account_unlocked")[-1].before["failed_logins"] == 5
    _sign_in(settings, engine, "cy", PASSWORD)


def test_changes_without_the_forms_security_token_are_refused(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "cy", Role.CODER)
    admin, _ = _admin(settings, engine)
    cy_id = _user(engine, "cy").id
    for path, data in (
        ("/admin/users", {"username": "x1", "role": "coder"}),
        (f"/admin/users/{cy_id}/role", {"role": "admin"}),
        (f"/admin/users/{cy_id}/deactivate", {}),
        (f"/admin/users/{cy_id}/password", {"mode": "temporary"}),
    ):
        assert admin.post(path, data=data).status_code == 403, path
    assert _user(engine, "cy").role == "coder"
    assert _user(engine, "cy").active


def test_an_admin_resets_their_own_password_on_their_password_page_only(
    settings: Settings, engine: Engine
) -> None:
    admin, csrf = _admin(settings, engine)
    ada_id = _user(engine, "ada").id
    assert 'href="/account/password"' in admin.get(f"/admin/users/{ada_id}").text
    refused = admin.post(
        f"/admin/users/{ada_id}/password",
        data={"csrf_token": csrf, "mode": "temporary"},
        headers={**HX, "HX-Trigger": "reset-password"},
    )
    assert refused.status_code == 409
    assert _user(engine, "ada").must_change_password is False
