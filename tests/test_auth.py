"""Sign-in, lockout, idle timeout, CSRF, API tokens and the users/tokens commands."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from labintake.auth.policy import LoginPolicy
from labintake.auth.roles import Role
from labintake.auth.signin import check_password
from labintake.cli import app as cli_app
from labintake.config import Settings
from labintake.models.users import ApiToken, User, WebSession
from labintake.web.app import create_app
from labintake.web.deps import SESSION_COOKIE
from tests.factories import PASSWORD, make_token, make_user
from tests.web_client import login


def test_password_is_stored_as_an_argon2_hash_and_login_sets_a_strict_httponly_cookie(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "cora")
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == "cora")).one()
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    client = TestClient(create_app(settings, engine))
    page = client.get("/login")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    response = client.post(
        "/login",
        data={"username": "cora", "password": PASSWORD, "login_token": token},
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"]
    assert SESSION_COOKIE in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    with Session(engine) as session:
        stored = session.exec(select(WebSession)).one()
        raw = client.cookies[SESSION_COOKIE]
        assert stored.id == hashlib.sha256(raw.encode()).hexdigest()


def test_cookie_is_marked_secure_outside_development(settings: Settings, engine: Engine) -> None:
    make_user(engine, "cora")
    production = settings.model_copy(update={"development": False})
    client = TestClient(create_app(production, engine), base_url="https://testserver")
    page = client.get("/login")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    response = client.post(
        "/login",
        data={"username": "cora", "password": PASSWORD, "login_token": token},
        follow_redirects=False,
    )
    assert "Secure" in response.headers["set-cookie"]


def test_wrong_password_is_refused_and_repeated_failures_lock_the_account(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "dale")
    policy = LoginPolicy(max_failed_logins=3, lockout=timedelta(minutes=10))
    client = TestClient(create_app(settings, engine, login_policy=policy))
    for _ in range(3):
        page = client.get("/login")
        token = page.text.split('name="login_token" value="')[1].split('"')[0]
        response = client.post(
            "/login", data={"username": "dale", "password": "wrong guess 123", "login_token": token}
        )
        assert response.status_code == 401
    page = client.get("/login")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    response = client.post(
        "/login", data={"username": "dale", "password": PASSWORD, "login_token": token}
    )
    assert response.status_code == 401
    assert "locked" in response.text


def test_a_session_idle_longer_than_the_timeout_is_ended(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "eve")
    policy = LoginPolicy(idle_timeout=timedelta(minutes=5))
    client = TestClient(create_app(settings, engine, login_policy=policy))
    login(client, "eve")
    with Session(engine) as session:
        stored = session.exec(select(WebSession)).one()
        stored.last_seen_at -= timedelta(minutes=6)
        session.add(stored)
        session.commit()
    response = client.get("/queue", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    with Session(engine) as session:
        assert session.exec(select(WebSession)).first() is None


def test_state_changes_with_the_session_cookie_need_the_csrf_token(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "fay")
    client = TestClient(create_app(settings, engine))
    csrf = login(client, "fay")
    refused = client.post("/logout", follow_redirects=False)
    assert refused.status_code == 403
    wrong = client.post("/logout", headers={"X-CSRF-Token": "forged"}, follow_redirects=False)
    assert wrong.status_code == 403
    accepted = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert accepted.status_code == 303
    assert client.get("/queue", follow_redirects=False).status_code == 303  # signed out


def test_login_never_redirects_off_site(settings: Settings, engine: Engine) -> None:
    make_user(engine, "gil")
    client = TestClient(create_app(settings, engine))
    page = client.get("/login")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    response = client.post(
        "/login",
        data={
            "username": "gil",
            "password": PASSWORD,
            "login_token": token,
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_api_tokens_are_stored_hashed_and_authenticate_their_user(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "hal", Role.MANAGER)
    token = make_token(engine, "hal")
    with Session(engine) as session:
        stored = session.exec(select(ApiToken)).one()
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in stored.token_hash
    client = TestClient(create_app(settings, engine))
    response = client.get("/api/messages", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"messages": [], "next_cursor": None}


def test_cli_adds_a_user_from_stdin_and_creates_a_token(settings: Settings, engine: Engine) -> None:
    runner = CliRunner()
    env = {"LABINTAKE_DATABASE_URL": settings.database_url, "LABINTAKE_DEVELOPMENT": "1"}
    result = runner.invoke(
        cli_app, ["users", "add", "ivy", "--role", "manager"], input=PASSWORD + "\n", env=env
    )
    assert result.exit_code == 0, result.output
    assert "user ivy added with role manager" in result.output
    result = runner.invoke(cli_app, ["tokens", "create", "ivy"], env=env)
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("lbi_")
    client = TestClient(create_app(settings, engine))
    assert (
        client.get("/api/orders", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )


def test_cli_refuses_a_short_password_and_an_unknown_role(
    settings: Settings, engine: Engine
) -> None:
    runner = CliRunner()
    env = {"LABINTAKE_DATABASE_URL": settings.database_url, "LABINTAKE_DEVELOPMENT": "1"}
    result = runner.invoke(cli_app, ["users", "add", "jo"], input="short\n", env=env)
    assert result.exit_code == 1
    assert "at least" in result.output
    result = runner.invoke(cli_app, ["users", "add", "jo", "--role", "boss"], input="x\n", env=env)
    assert result.exit_code == 2


def test_demo_users_are_created_once_with_each_role(settings: Settings, engine: Engine) -> None:
    from labintake.auth.accounts import DEMO_PASSWORD, ensure_demo_users
    from labintake.db import session_scope

    with session_scope(engine) as session:
        assert ensure_demo_users(session) == ["coder", "manager", "admin"]
    with session_scope(engine) as session:
        assert ensure_demo_users(session) == []
    client = TestClient(create_app(settings, engine))
    login(client, "manager", DEMO_PASSWORD)
    assert "Error queue" in client.get("/queue").text


def test_a_nul_in_the_username_is_a_failed_login_not_a_server_error(
    settings: Settings, engine: Engine
) -> None:
    client = TestClient(create_app(settings, engine))
    page = client.get("/login")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    response = client.post(
        "/login", data={"username": "a\x00b", "password": "whatever 123", "login_token": token}
    )
    assert response.status_code == 401


def test_cli_revokes_a_token_and_resets_a_password(settings: Settings, engine: Engine) -> None:
    make_user(engine, "kim", Role.MANAGER)
    token = make_token(engine, "kim")
    runner = CliRunner()
    env = {"LABINTAKE_DATABASE_URL": settings.database_url, "LABINTAKE_DEVELOPMENT": "1"}
    result = runner.invoke(cli_app, ["tokens", "revoke", token[:12]], env=env)
    assert result.exit_code == 0, result.output
    client = TestClient(create_app(settings, engine))
    assert (
        client.get("/api/orders", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )
    new_password = "a brand new passphrase"
    result = runner.invoke(cli_app, ["users", "passwd", "kim"], input=new_password + "\n", env=env)
    assert result.exit_code == 0, result.output
    login(client, "kim", new_password)


def test_signing_in_deletes_sessions_left_idle(settings: Settings, engine: Engine) -> None:
    make_user(engine, "lou")
    first = TestClient(create_app(settings, engine))
    login(first, "lou")
    with Session(engine) as session:
        stale = session.exec(select(WebSession)).one()
        stale.last_seen_at -= timedelta(hours=1)
        session.add(stale)
        session.commit()
        stale_id = stale.id
    login(TestClient(create_app(settings, engine)), "lou")
    with Session(engine) as session:
        ids = [s.id for s in session.exec(select(WebSession))]
    assert stale_id not in ids
    assert len(ids) == 1


def test_a_hash_made_with_other_argon2_parameters_verifies_and_is_redone_at_login(
    engine: Engine,
) -> None:
    old = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)  # argon2-cffi's
    make_user(engine, "olduser")
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == "olduser")).one()
        user.password_hash = old.hash(PASSWORD)
        session.add(user)
        session.commit()
        assert check_password(session, "olduser", PASSWORD).username == "olduser"
        session.commit()
        stored = session.exec(select(User).where(User.username == "olduser")).one()
    assert stored.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
