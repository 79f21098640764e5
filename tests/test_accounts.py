"""Accounts under pressure: an atomic lockout, sessions and tokens that end with a change of
password, role or status, audited refusals, login CSRF, the sign-in throttle and hash slots."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from labintake.auth import accounts, hashing, signin
from labintake.auth.policy import LoginPolicy
from labintake.auth.roles import Role
from labintake.auth.signin import check_password
from labintake.cli import app as cli_app
from labintake.config import Settings
from labintake.errors import NotAuthenticatedError, WorkflowError
from labintake.logs import configure_logging
from labintake.models.users import ApiToken, AuditEntry, User
from labintake.web.app import create_app
from labintake.web.routes.login import LOGIN_COOKIE
from tests.factories import PASSWORD, make_token, make_user
from tests.web_client import login

WRONG = "not the password at all"
_LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password hash checked against a real account's hash (not the dummy one)."""
    checked: list[str] = []
    real = hashing.verify_password

    def counting(password_hash: str, password: str) -> bool:
        if password_hash != signin._dummy_hash():
            checked.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(signin, "verify_password", counting)
    monkeypatch.setattr(hashing, "HASH_WAIT_SECONDS", 60.0)  # the test's threads all wait
    return checked


def _in_parallel(engine: Engine, passwords: list[str], policy: LoginPolicy) -> list[str]:
    """Sign in as 'gus' with each password at once, each in its own session: the outcomes."""
    start = threading.Barrier(len(passwords))
    outcomes: list[str] = [""] * len(passwords)

    def attempt(i: int) -> None:
        with Session(engine, expire_on_commit=False) as session:
            start.wait()
            try:
                check_password(session, "gus", passwords[i], policy, client="10.0.0.9")
                session.commit()
                outcomes[i] = "signed in"
            except NotAuthenticatedError as exc:
                outcomes[i] = "locked" if "locked" in str(exc) else "refused"

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(passwords))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def _user(engine: Engine, name: str) -> User:
    with Session(engine) as session:
        return session.exec(select(User).where(User.username == name)).one()


def test_parallel_wrong_passwords_get_no_more_checks_than_the_lockout_allows(
    engine: Engine, counted_checks: list[str]
) -> None:
    make_user(engine, "gus")
    policy = LoginPolicy(max_failed_logins=5)
    outcomes = _in_parallel(engine, [WRONG] * 25, policy)
    assert len(counted_checks) <= 5
    assert outcomes.count("refused") == len(counted_checks)
    assert outcomes.count("locked") == 25 - len(counted_checks)
    user = _user(engine, "gus")
    assert user.locked_until is not None
    with Session(engine) as session:  # the right password now waits for the lockout too
        with pytest.raises(NotAuthenticatedError, match="locked"):
            check_password(session, "gus", PASSWORD, policy)
        locks = session.exec(select(AuditEntry).where(AuditEntry.action == "account_locked"))
        assert len(list(locks)) == 1


def test_a_right_password_among_parallel_wrong_ones_does_not_open_more_guesses(
    engine: Engine, counted_checks: list[str]
) -> None:
    make_user(engine, "gus")
    policy = LoginPolicy(max_failed_logins=5)
    passwords = [WRONG] * 14 + [PASSWORD] + [WRONG] * 15
    outcomes = _in_parallel(engine, passwords, policy)
    wrong_checked = [p for p in counted_checks if p == WRONG]
    assert len(counted_checks) <= 5
    assert len(wrong_checked) <= 5
    assert outcomes.count("signed in") == counted_checks.count(PASSWORD)
    # Every guess is still counted: the account ends locked, whoever signed in.
    assert _user(engine, "gus").locked_until is not None


def test_a_lockout_ends_after_its_time_and_counting_starts_again(
    engine: Engine, counted_checks: list[str]
) -> None:
    make_user(engine, "gus")
    policy = LoginPolicy(max_failed_logins=2, lockout=timedelta(minutes=10))
    _in_parallel(engine, [WRONG] * 3, policy)
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == "gus")).one()
        assert user.locked_until is not None
        user.locked_until -= timedelta(minutes=11)
        session.add(user)
        session.commit()
        assert check_password(session, "gus", PASSWORD, policy).username == "gus"
        session.commit()
    assert _user(engine, "gus").failed_logins == 0


def test_a_sign_in_after_some_typos_clears_the_count(
    engine: Engine, counted_checks: list[str]
) -> None:
    make_user(engine, "gus")
    policy = LoginPolicy(max_failed_logins=3)
    with Session(engine) as session:
        for _ in range(2):
            with pytest.raises(NotAuthenticatedError):
                check_password(session, "gus", WRONG, policy)
        check_password(session, "gus", PASSWORD, policy)
        session.commit()
    assert _user(engine, "gus").failed_logins == 0


def _cli(settings: Settings, *args: str, password: str | None = None) -> str:
    env = {"LABINTAKE_DATABASE_URL": settings.database_url, "LABINTAKE_DEVELOPMENT": "1"}
    stdin = password + "\n" if password is not None else None
    result = CliRunner().invoke(cli_app, list(args), input=stdin, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _signed_in_everywhere(
    settings: Settings, engine: Engine, name: str
) -> tuple[TestClient, dict[str, str]]:
    browser = TestClient(create_app(settings, engine))
    login(browser, name)
    api = {"Authorization": f"Bearer {make_token(engine, name)}", "Accept": "application/json"}
    assert browser.get("/queue", follow_redirects=False).status_code == 200
    assert browser.get("/api/orders", headers=api).status_code == 200
    return browser, api


def _ended(browser: TestClient, api: dict[str, str]) -> bool:
    page = browser.get("/queue", follow_redirects=False)
    return (
        page.status_code == 303
        and page.headers["location"].startswith("/login")
        and browser.get("/api/orders", headers=api).status_code == 401
    )


CHANGES: dict[str, Callable[[Settings], str]] = {
    "password": lambda s: _cli(s, "users", "passwd", "hal", password="another long passphrase"),
    "role": lambda s: _cli(s, "users", "role", "hal", "manager"),
    "deactivate": lambda s: _cli(s, "users", "deactivate", "hal"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_changing_password_or_role_or_deactivating_ends_sessions_and_tokens(
    settings: Settings, engine: Engine, change: str
) -> None:
    make_user(engine, "hal")
    make_user(engine, "other")
    browser, api = _signed_in_everywhere(settings, engine, "hal")
    bystander, bystander_api = _signed_in_everywhere(settings, engine, "other")
    assert "ended" in CHANGES[change](settings)
    assert _ended(browser, api)
    assert not _ended(bystander, bystander_api)  # other users keep theirs
    with Session(engine) as session:
        entry = session.exec(
            select(AuditEntry).where(
                col(AuditEntry.action).in_(["password_changed", "role_changed", "user_deactivated"])
            )
        ).one()
        tokens = session.exec(select(ApiToken).where(ApiToken.revoked_at != None)).all()  # noqa: E711
    assert entry.before["user"] == "hal"
    assert entry.after["sessions_ended"] == 1
    assert entry.after["tokens_revoked"] == 1
    assert len(tokens) == 1


def test_a_deactivated_user_cannot_sign_in_until_reactivated(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "ida")
    _cli(settings, "users", "deactivate", "ida")
    assert "inactive already" in _cli(settings, "users", "deactivate", "ida")
    client = TestClient(create_app(settings, engine))
    page = client.get("/login")
    token = _LOGIN_TOKEN.search(page.text)
    assert token is not None
    form = {"username": "ida", "password": PASSWORD, "login_token": token.group(1)}
    assert client.post("/login", data=form).status_code == 401
    assert "reactivated" in _cli(settings, "users", "reactivate", "ida")
    login(client, "ida")
    with Session(engine) as session:
        actions = [e.action for e in session.exec(select(AuditEntry).order_by(AuditEntry.id))]  # type: ignore[arg-type]
    assert actions[:4] == ["user_added", "user_deactivated", "login_failed", "user_reactivated"]


def test_failed_sign_ins_and_the_lockout_are_audited_and_logged_without_the_password(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "jay")
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    configure_logging(settings, stream=buffer)
    try:
        policy = LoginPolicy(max_failed_logins=2)
        client = TestClient(create_app(settings, engine, login_policy=policy))
        for name, password in (("jay", "Secret-Guess-1"), ("nobody", "Secret-Guess-2")) * 2:
            page = client.get("/login")
            token = _LOGIN_TOKEN.search(page.text)
            assert token is not None
            form = {"username": name, "password": password, "login_token": token.group(1)}
            assert client.post("/login", data=form).status_code == 401
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    output = buffer.getvalue()
    assert "Secret-Guess" not in output
    assert output.count("sign-in refused") == 4
    assert "account locked" in output
    assert "user=jay" in output
    assert "peer=testclient" in output
    with Session(engine) as session:
        entries = list(session.exec(select(AuditEntry).order_by(AuditEntry.id)))  # type: ignore[arg-type]
    assert [(e.actor, e.action) for e in entries] == [
        ("cli", "user_added"),
        ("jay", "login_failed"),
        ("unknown", "login_failed"),
        ("jay", "account_locked"),
        ("jay", "login_failed"),
        ("unknown", "login_failed"),
    ]
    assert all("Secret-Guess" not in str(e.after) for e in entries)
    assert entries[1].after == {"client": "testclient", "reason": "wrong password"}


def test_a_login_form_from_another_browser_is_refused(settings: Settings, engine: Engine) -> None:
    """Login CSRF: a token fetched by an attacker's browser does not sign the victim's in."""
    make_user(engine, "kit")
    attacker = TestClient(create_app(settings, engine))
    token = _LOGIN_TOKEN.search(attacker.get("/login").text)
    assert token is not None
    form = {"username": "kit", "password": PASSWORD, "login_token": token.group(1)}
    victim = TestClient(create_app(settings, engine))
    refused = victim.post("/login", data=form, follow_redirects=False)
    assert refused.status_code == 400
    assert "expired" in refused.text
    victim.get("/login")  # the victim's own pre-session cookie, yet the attacker's token
    assert victim.post("/login", data=form, follow_redirects=False).status_code == 400
    signed_in = attacker.post("/login", data=form, follow_redirects=False)
    assert signed_in.status_code == 303
    assert LOGIN_COOKIE not in attacker.cookies  # dropped once signed in


@pytest.fixture
def strict_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"login_rate_per_address": "6/minute", "login_rate_per_account": "3/minute"}
    )


def _attempt(client: TestClient, username: str, password: str = WRONG) -> int:
    token = _LOGIN_TOKEN.search(client.get("/login").text)
    assert token is not None
    form = {"username": username, "password": password, "login_token": token.group(1)}
    response = client.post("/login", data=form, follow_redirects=False)
    if response.status_code == 429:
        assert int(response.headers["retry-after"]) >= 1
        assert "too many sign-in attempts" in response.text.lower()
    return response.status_code


def test_sign_in_attempts_over_the_rate_per_account_or_per_address_get_429(
    strict_settings: Settings, engine: Engine, counted_checks: list[str]
) -> None:
    make_user(engine, "lee")
    client = TestClient(create_app(strict_settings, engine))
    assert [_attempt(client, "lee") for _ in range(4)] == [401, 401, 401, 429]
    assert len(counted_checks) == 3  # the fourth was refused before any hash
    assert [_attempt(client, f"someone{i}") for i in range(3)] == [401, 401, 429]
    # Another address is not affected by this one's attempts.
    other = TestClient(create_app(strict_settings, engine), client=("10.1.2.3", 5000))
    other.app.state.sign_in_throttle = client.app.state.sign_in_throttle  # type: ignore[attr-defined]
    assert _attempt(other, "someone-else") == 401


def test_a_sign_in_with_every_hashing_slot_taken_is_refused_at_once_with_503(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "max")
    client = TestClient(create_app(settings, engine))
    held = [hashing._slots.acquire(timeout=5) for _ in range(hashing.HASH_SLOTS)]
    try:
        assert all(held)
        token = _LOGIN_TOKEN.search(client.get("/login").text)
        assert token is not None
        form = {"username": "max", "password": PASSWORD, "login_token": token.group(1)}
        response = client.post("/login", data=form, follow_redirects=False)
    finally:
        for _ in held:
            hashing._slots.release()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "busy" in response.text
    login(client, "max")  # with the slots free again, signing in works


def test_a_users_direct_line_is_set_from_the_cli_audited_and_refused_when_not_a_phone(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "joy")
    assert "direct line of joy: (515) 555-0142" in _cli(
        settings, "users", "phone", "joy", "(515) 555-0142"
    )
    assert "has that line already" in _cli(settings, "users", "phone", "joy", "(515) 555-0142")
    env = {"LABINTAKE_DATABASE_URL": settings.database_url, "LABINTAKE_DEVELOPMENT": "1"}
    refused = CliRunner().invoke(cli_app, ["users", "phone", "joy", "call the desk"], env=env)
    assert refused.exit_code == 1
    assert "a direct line is up to 40 characters" in refused.output
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == "joy")).one()
        entry = session.exec(
            select(AuditEntry).where(AuditEntry.action == "user_phone_changed")
        ).one()
    assert user.phone == "(515) 555-0142"
    assert (entry.before["phone"], entry.after["phone"]) == ("", "(515) 555-0142")


def test_the_commands_keep_an_active_administrator_and_name_tokens(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "root", Role.ADMIN)
    env = {"LABINTAKE_DATABASE_URL": settings.database_url, "LABINTAKE_DEVELOPMENT": "1"}
    for args in (["users", "role", "root", "manager"], ["users", "deactivate", "root"]):
        refused = CliRunner().invoke(cli_app, args, env=env)
        assert refused.exit_code == 1
        assert "root is the last one; make another user an administrator first" in refused.output
    assert (_user(engine, "root").role, _user(engine, "root").active) == ("admin", True)
    make_user(engine, "deputy", Role.ADMIN)
    assert "now has role manager" in _cli(settings, "users", "role", "root", "manager")
    token = _cli(settings, "tokens", "create", "deputy", "--name", "nightly export").strip()
    with Session(engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.prefix == token[:12])).one()
        added = session.exec(select(AuditEntry).where(AuditEntry.action == "user_added")).all()
    assert row.name == "nightly export"
    assert [(e.actor, e.via, e.after["user"]) for e in added] == [
        ("cli", "cli", "root"),
        ("cli", "cli", "deputy"),
    ]


@pytest.mark.parametrize("change", ["role", "deactivate"])
def test_two_administrators_stepping_each_other_down_at_once_leave_one(
    engine: Engine, change: str
) -> None:
    make_user(engine, "amy", Role.ADMIN)
    make_user(engine, "bea", Role.ADMIN)
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def step_down(actor: str, target: str) -> None:
        with Session(engine, expire_on_commit=False) as session:
            user = session.exec(select(User).where(User.username == target)).one()
            session.commit()  # no transaction open while waiting for the other thread
            start.wait()
            try:
                if change == "role":
                    accounts.set_role(session, user, Role.CODER, actor=actor)
                else:
                    accounts.deactivate_user(session, user, actor=actor)
                session.commit()
                outcomes[target] = "changed"
            except WorkflowError as exc:
                session.rollback()
                outcomes[target] = str(exc)

    threads = [
        threading.Thread(target=step_down, args=pair) for pair in (("amy", "bea"), ("bea", "amy"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes.values())[0] == "changed"
    assert "is the last one" in sorted(outcomes.values())[1]
    with Session(engine) as session:
        admins = session.exec(
            select(User).where(User.role == "admin", User.active == True)  # noqa: E712
        ).all()
    assert len(admins) == 1


@pytest.fixture
def every_hash(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 check made, the dummy hash's included."""
    checked: list[str] = []
    real = hashing._verify

    def counting(password_hash: str, password: str) -> bool:
        checked.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(hashing, "_verify", counting)
    return checked


def _audit_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(AuditEntry.id)).all())


def test_a_throttled_client_costs_no_hash_and_no_database_write(
    strict_settings: Settings, engine: Engine, every_hash: list[str]
) -> None:
    make_user(engine, "flo")
    client = TestClient(create_app(strict_settings, engine))
    # Unknown names: each checks the dummy hash until the address is over its 6 a minute.
    assert [_attempt(client, f"nobody{i}") for i in range(6)] == [401] * 6
    hashes, rows = len(every_hash), _audit_rows(engine)
    assert hashes == 6
    assert [_attempt(client, name) for name in ("flo", "nobody9", "flo")] == [429] * 3
    assert (len(every_hash), _audit_rows(engine)) == (hashes, rows)
    assert _user(engine, "flo").failed_logins == 0  # not even counted


def test_a_locked_account_is_refused_without_a_hash_or_a_count(
    engine: Engine, every_hash: list[str]
) -> None:
    make_user(engine, "ida")
    policy = LoginPolicy(max_failed_logins=2)
    with Session(engine, expire_on_commit=False) as session:
        for _ in range(3):
            with pytest.raises(NotAuthenticatedError):
                check_password(session, "ida", WRONG, policy)
    locked = _user(engine, "ida")
    assert locked.locked_until is not None
    hashes = len(every_hash)
    with Session(engine, expire_on_commit=False) as session:
        for password in (WRONG, PASSWORD):
            with pytest.raises(NotAuthenticatedError, match="locked"):
                check_password(session, "ida", password, policy)
    assert len(every_hash) == hashes
    assert _user(engine, "ida").failed_logins == locked.failed_logins


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread priority here")
def test_passwords_are_hashed_in_threads_at_the_lowest_cpu_priority() -> None:
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    assert niceness() < hashing.HASH_NICENESS  # the caller's own priority is left alone
    assert hashing._in_hashing_thread(niceness) == hashing.HASH_NICENESS
    assert niceness() < hashing.HASH_NICENESS
    assert hashing.verify_password(hashing.hash_password(PASSWORD), PASSWORD)
