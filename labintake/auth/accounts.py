"""User accounts: creation with argon2 password hashes, and password checks with lockout."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, select

from labintake.auth.policy import DEFAULT_POLICY, LoginPolicy
from labintake.auth.roles import Role
from labintake.db import utcnow
from labintake.errors import NotAuthenticatedError, WorkflowError
from labintake.models.users import User

# argon2id at the OWASP Password Storage Cheat Sheet's first configuration (19 MiB, 2
# iterations, 1 lane) rather than the library's default (64 MiB, 3, 4): the same strength by
# that guide, and each login check costs the listener's process 19 MiB instead of 64. Hashes
# made with other parameters still verify, and are redone at the next successful login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so timing does not reveal usernames."""
    return _hasher.hash("not a real password, only for constant time")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def find_user(session: Session, username: str) -> User | None:
    return session.exec(select(User).where(User.username == username)).first()


def create_user(
    session: Session,
    username: str,
    role: Role,
    password: str,
    *,
    display_name: str = "",
    policy: LoginPolicy = DEFAULT_POLICY,
) -> User:
    """A new active user; refuses a taken name or a short password."""
    username = username.strip()
    if not username or len(username) > 100 or any(c.isspace() for c in username):
        raise WorkflowError("a username is 1-100 characters without spaces")
    if len(password) < policy.min_password_length:
        raise WorkflowError(
            f"the password must have at least {policy.min_password_length} characters"
        )
    if find_user(session, username) is not None:
        raise WorkflowError(f"user {username!r} exists already")
    user = User(
        username=username,
        display_name=display_name or username,
        role=role.value,
        password_hash=hash_password(password),
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user: User, password: str, policy: LoginPolicy) -> None:
    if len(password) < policy.min_password_length:
        raise WorkflowError(
            f"the password must have at least {policy.min_password_length} characters"
        )
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)


def check_password(
    session: Session, username: str, password: str, policy: LoginPolicy = DEFAULT_POLICY
) -> User:
    """The user whose password this is; counts failures and locks the account after too many.

    Failures are committed by the caller even when this raises (the count must stick).
    """
    if "\x00" in username or "\x00" in password:  # never a valid name; PostgreSQL refuses NUL
        raise NotAuthenticatedError("unknown user or wrong password")
    user = find_user(session, username.strip())
    now = utcnow()
    if user is None or not user.active:
        _verify(_dummy_hash(), password)
        raise NotAuthenticatedError("unknown user or wrong password")
    if user.locked_until is not None and user.locked_until > now:
        raise NotAuthenticatedError(
            "this account is locked after repeated failed logins; try again later "
            "or ask an administrator"
        )
    if not _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= policy.max_failed_logins:
            user.locked_until = now + policy.lockout
            user.failed_logins = 0
        session.add(user)
        raise NotAuthenticatedError("unknown user or wrong password")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    session.add(user)
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


DEMO_PASSWORD = "labintake-demo"  # noqa: S105 - demo mode only, printed on start
DEMO_USERS = (("coder", Role.CODER), ("manager", Role.MANAGER), ("admin", Role.ADMIN))


def ensure_demo_users(session: Session) -> list[str]:
    """`serve --demo`: users coder, manager and admin (password DEMO_PASSWORD) if missing."""
    added = []
    for username, role in DEMO_USERS:
        if find_user(session, username) is None:
            create_user(session, username, role, DEMO_PASSWORD, display_name=username.title())
            added.append(username)
    return added


def active_usernames(session: Session) -> list[str]:
    """Who an order can be assigned to."""
    return list(
        session.exec(select(User.username).where(User.active == True).order_by(User.username))  # noqa: E712
    )
