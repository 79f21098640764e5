"""Signing in: the password check, failed sign-ins counted, and the lockout after too many.

Lockout. Each check first counts itself, in one statement (``UPDATE ... SET failed_logins =
failed_logins + 1 ... RETURNING failed_logins``, on SQLite and PostgreSQL alike), and commits
that count before any hash is computed. The n-th attempt in flight gets n: only attempts with
n <= max_failed_logins have their password checked at all, the next one locks the account,
and a locked account is refused without a check. So parallel guesses cannot slip past the
count between read and write, and the count is committed while the (slow) hash runs, so no
write transaction stays open meanwhile. A right password clears the count only when no other
attempt came in alongside it; otherwise the racing guesses stay counted.

Every refused sign-in is audited (`login_failed`, `account_locked`) and logged, with the
client address and never the password.
"""

from __future__ import annotations

import contextlib
import logging
from functools import cache
from typing import NoReturn

from sqlalchemy import case, update
from sqlmodel import Session, col

from labintake import audit
from labintake.auth.accounts import find_user
from labintake.auth.hashing import hash_password, needs_rehash, verify_password
from labintake.auth.policy import DEFAULT_POLICY, LoginPolicy
from labintake.db import utcnow
from labintake.errors import BusyError, NotAuthenticatedError
from labintake.models.users import User

__all__ = ["LOCKED", "WRONG", "check_password"]

log = logging.getLogger("labintake.auth")

WRONG = "unknown user or wrong password"
LOCKED = (
    "this account is locked after repeated failed logins; try again later or ask an administrator"
)


@cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so timing does not reveal usernames."""
    return hash_password("not a real password, only for constant time", wait=60.0)


def check_password(
    session: Session,
    username: str,
    password: str,
    policy: LoginPolicy = DEFAULT_POLICY,
    *,
    client: str = "",
) -> User:
    """The user whose password this is, or NotAuthenticatedError (audited and logged).

    Commits: the attempt is counted (and committed) before the hash is checked, and the
    outcome is committed after it. See the module docstring for the lockout.
    """
    username = username.strip()
    if "\x00" in username or "\x00" in password:  # never a valid name; PostgreSQL refuses NUL
        _refuse(session, None, client, "unknown user")
    user = find_user(session, username)
    if user is None or user.id is None or not user.active:
        verify_password(_dummy_hash(), password)
        _refuse(session, user, client, "unknown user" if user is None else "inactive")
    if user.locked_until is not None and user.locked_until > utcnow():
        # Locked as read: refused without counting (a write) or hashing. One that ended
        # meanwhile is still counted below, which takes the lock's end into account.
        _refuse(session, user, client, "locked", message=LOCKED)
    attempt = _count_attempt(session, user.id)
    if attempt is None:
        _refuse(session, user, client, "locked", message=LOCKED)
    if attempt > policy.max_failed_logins:
        _lock(session, user, client, policy)
        _refuse(session, user, client, "locked", message=LOCKED)
    if not verify_password(user.password_hash, password):
        if attempt >= policy.max_failed_logins:
            _lock(session, user, client, policy)
        _refuse(session, user, client, "wrong password")
    _signed_in(session, user, password, attempt)
    return user


def _count_attempt(session: Session, user_id: int) -> int | None:
    """Count one attempt atomically and commit; its number, or None while locked."""
    now = utcnow()
    lock_over = col(User.locked_until).is_not(None) & (col(User.locked_until) <= now)
    counted = session.execute(
        update(User)
        .where(
            col(User.id) == user_id,
            col(User.locked_until).is_(None) | (col(User.locked_until) <= now),
        )
        .values(
            failed_logins=case((lock_over, 1), else_=col(User.failed_logins) + 1),
            locked_until=case((lock_over, None), else_=col(User.locked_until)),
        )
        .returning(col(User.failed_logins))
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    session.commit()
    return counted


def _lock(session: Session, user: User, client: str, policy: LoginPolicy) -> None:
    """Lock the account now, unless an attempt alongside did already (audited once)."""
    until = utcnow() + policy.lockout
    locked = session.execute(
        update(User)
        .where(col(User.id) == user.id, col(User.locked_until).is_(None))
        .values(locked_until=until)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if locked:
        audit.record(
            session,
            user.username,
            "account_locked",
            via="web",
            after={"client": client, "until": until.isoformat(timespec="seconds")},
        )
        log.warning(
            f"account locked after {policy.max_failed_logins} failed sign-ins",
            extra={"user": user.username, "peer": client, "event": "account_locked"},
        )
    session.commit()


def _refuse(
    session: Session, user: User | None, client: str, reason: str, *, message: str = WRONG
) -> NoReturn:
    """Audit and log a refused sign-in (never the password), commit, and raise."""
    session.rollback()
    name = user.username if user is not None else "unknown"
    audit.record(
        session, name, "login_failed", via="web", after={"client": client, "reason": reason}
    )
    session.commit()
    log.warning("sign-in refused", extra={"user": name, "peer": client, "reason": reason})
    raise NotAuthenticatedError(message)


def _signed_in(session: Session, user: User, password: str, attempt: int) -> None:
    """Clear the count when no other attempt came in alongside this one; rehash if due."""
    session.execute(
        update(User)
        .where(col(User.id) == user.id, col(User.failed_logins) == attempt)
        .values(failed_logins=0)
        .execution_options(synchronize_session=False)
    )
    session.refresh(user)
    if needs_rehash(user.password_hash):
        with contextlib.suppress(BusyError):  # no slot free: redone at a later sign-in
            user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    session.add(user)
