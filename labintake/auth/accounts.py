"""User accounts: creating users with argon2 password hashes, and the changes that end a
user's sessions and tokens (password, role, deactivation). Signing in, with its lockout
after failed attempts, is :mod:`labintake.auth.signin`.

Every change is audited with who made it (`actor`: a username, or "cli") and how (`via`).
The last active administrator can be neither demoted nor deactivated, so someone can always
manage the users from the screen.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from labintake import audit
from labintake.auth.hashing import hash_password, verify_password
from labintake.auth.policy import DEFAULT_POLICY, LoginPolicy
from labintake.auth.roles import Role
from labintake.db import utcnow
from labintake.errors import WorkflowError
from labintake.models.users import ApiToken, User, WebSession

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USERS",
    "active_usernames",
    "change_own_password",
    "create_user",
    "deactivate_user",
    "end_access",
    "ensure_demo_users",
    "find_user",
    "hash_password",
    "reactivate_user",
    "set_password",
    "set_phone",
    "set_role",
    "unlock_user",
]

log = logging.getLogger("labintake.auth")


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
    must_change_password: bool = False,
    actor: str = "cli",
    via: str = "cli",
) -> User:
    """A new active user (audited); refuses a taken name or a short password. With
    `must_change_password` the user is asked for a new password at the first sign-in."""
    username = username.strip()
    display_name = display_name.strip()
    if not username or len(username) > 100 or any(c.isspace() for c in username):
        raise WorkflowError("a username is 1-100 characters without spaces", field="username")
    if len(display_name) > 200:
        raise WorkflowError("a display name is at most 200 characters", field="display_name")
    _check_length(password, policy)
    if find_user(session, username) is not None:
        raise WorkflowError(f"user {username!r} exists already", field="username")
    user = User(
        username=username,
        display_name=display_name or username,
        role=role,
        password_hash=hash_password(password, wait=60.0),
        must_change_password=must_change_password,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "user_added",
        via=via,
        after={
            "user": username,
            "role": role,
            "display_name": user.display_name,
            "must_change_password": must_change_password,
        },
    )
    return user


def _check_length(password: str, policy: LoginPolicy) -> None:
    if len(password) < policy.min_password_length:
        raise WorkflowError(
            f"the password must have at least {policy.min_password_length} characters",
            field="password",
        )


def _keep_an_admin(session: Session, user: User, field: str) -> None:
    """Refuse to take the admin role or access from `user`, an active administrator, if no
    other is active.

    Checked before the change, with the active administrators' rows locked (PostgreSQL:
    two administrators demoting each other at once are taken one after the other), and
    again after it, once this transaction holds the write lock (SQLite, where reads take
    no lock): see `_an_admin_remains`.
    """
    admins = session.exec(
        select(User.id)
        .where(User.role == Role.ADMIN, User.active == True)  # noqa: E712
        .order_by(col(User.id))
        .with_for_update()
    ).all()
    if not [i for i in admins if i != user.id]:
        raise WorkflowError(_last_admin(user), field=field)


def _an_admin_remains(session: Session, user: User, field: str) -> None:
    """After `user` stepped down as an administrator, with the change written: refuse it if
    no active administrator is left (never asked when there was none to begin with)."""
    session.flush()
    left = session.exec(
        select(func.count()).select_from(User).where(User.role == Role.ADMIN, User.active == True)  # noqa: E712
    ).one()
    if not left:
        raise WorkflowError(_last_admin(user), field=field)


def _last_admin(user: User) -> str:
    return (
        f"there must be an active administrator and {user.username} is the last one; "
        "make another user an administrator first"
    )


def end_access(session: Session, user: User) -> tuple[int, int]:
    """End every web session of `user` and revoke its API tokens: (sessions, tokens)."""
    assert user.id is not None
    sessions = session.execute(delete(WebSession).where(col(WebSession.user_id) == user.id))
    tokens = session.execute(
        update(ApiToken)
        .where(col(ApiToken.user_id) == user.id, col(ApiToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(sessions.rowcount or 0), int(tokens.rowcount or 0)  # type: ignore[attr-defined]


def _changed(
    session: Session,
    user: User,
    action: str,
    actor: str,
    via: str,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """Record an account change, ending the user's sessions and tokens with it."""
    sessions, tokens = end_access(session, user)
    session.add(user)
    audit.record(
        session,
        actor,
        action,
        via=via,
        before={"user": user.username, **before},
        after={**after, "sessions_ended": sessions, "tokens_revoked": tokens},
    )
    log.info(
        f"account {action.replace('_', ' ')}; {sessions} session(s) ended, "
        f"{tokens} token(s) revoked",
        extra={"user": user.username, "event": action},
    )


def set_password(
    session: Session,
    user: User,
    password: str,
    policy: LoginPolicy = DEFAULT_POLICY,
    *,
    actor: str = "cli",
    via: str = "cli",
    must_change: bool = False,
) -> None:
    """A new password (also lifts a lockout); the user's sessions and tokens end. With
    `must_change` the user is asked for another one at the next sign-in."""
    _check_length(password, policy)
    user.password_hash = hash_password(password, wait=60.0)
    user.failed_logins = 0
    user.locked_until = None
    user.must_change_password = must_change
    _changed(session, user, "password_changed", actor, via, {}, {"must_change": must_change})


def change_own_password(
    session: Session,
    user: User,
    current: str,
    new: str,
    policy: LoginPolicy = DEFAULT_POLICY,
    *,
    via: str = "web",
) -> None:
    """The user replaces their own password, proving the current one; their sessions and
    tokens end (the caller opens a new session). Clears "must change at next sign-in"."""
    if not verify_password(user.password_hash, current):
        raise WorkflowError("that is not your current password", field="current_password")
    if new == current:
        raise WorkflowError("choose a new password, not the one you have now", field="new_password")
    try:
        set_password(session, user, new, policy, actor=user.username, via=via)
    except WorkflowError as exc:
        raise WorkflowError(str(exc), field="new_password") from None


def unlock_user(session: Session, user: User, *, actor: str, via: str = "cli") -> bool:
    """Lift a lockout after failed sign-ins (audited). False when the account was not locked."""
    if user.locked_until is None and user.failed_logins == 0:
        return False
    before = {
        "user": user.username,
        "failed_logins": user.failed_logins,
        "locked_until": user.locked_until.isoformat(timespec="seconds")
        if user.locked_until
        else None,
    }
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    audit.record(session, actor, "account_unlocked", via=via, before=before, after={})
    log.info("account unlocked", extra={"user": user.username, "event": "account_unlocked"})
    return True


def set_role(session: Session, user: User, role: Role, *, actor: str, via: str = "cli") -> bool:
    """Give `user` another role; its sessions and tokens end. False when it had that role.
    Refused for the last active administrator."""
    if user.role == role:
        return False
    stepping_down = user.role == Role.ADMIN and user.active
    if stepping_down:
        _keep_an_admin(session, user, "role")
    before = {"role": user.role}
    user.role = role
    if stepping_down:
        _an_admin_remains(session, user, "role")
    _changed(session, user, "role_changed", actor, via, before, {"role": role})
    return True


_PHONE = re.compile(r"[0-9A-Za-z +().,#/-]{0,40}")


def set_phone(session: Session, user: User, phone: str, *, actor: str, via: str = "cli") -> bool:
    """Set `user`'s direct line (printed on the queries they write; empty clears it), audited.
    False when it had that line already."""
    phone = " ".join(phone.split())
    if not _PHONE.fullmatch(phone) or (phone and not any(c.isdigit() for c in phone)):
        raise WorkflowError(
            "a direct line is up to 40 characters: digits, spaces, + ( ) - . / # and letters "
            "such as 'ext'",
            field="phone",
        )
    if user.phone == phone:
        return False
    audit.record(
        session,
        actor,
        "user_phone_changed",
        via=via,
        before={"username": user.username, "phone": user.phone},
        after={"username": user.username, "phone": phone},
    )
    user.phone = phone
    session.add(user)
    return True


def deactivate_user(session: Session, user: User, *, actor: str, via: str = "cli") -> bool:
    """No more sign-ins or API calls as `user`; sessions and tokens end. False if inactive.
    Refused for the last active administrator."""
    if not user.active:
        return False
    stepping_down = user.role == Role.ADMIN
    if stepping_down:
        _keep_an_admin(session, user, "active")
    user.active = False
    if stepping_down:
        _an_admin_remains(session, user, "active")
    _changed(session, user, "user_deactivated", actor, via, {"active": True}, {"active": False})
    return True


def reactivate_user(session: Session, user: User, *, actor: str, via: str = "cli") -> bool:
    """Let `user` sign in again (revoked tokens stay revoked). False when already active."""
    if user.active:
        return False
    user.active = True
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    audit.record(
        session,
        actor,
        "user_reactivated",
        via=via,
        before={"user": user.username, "active": False},
        after={"active": True},
    )
    log.info("account reactivated", extra={"user": user.username, "event": "user_reactivated"})
    return True


DEMO_PASSWORD = "labintake-demo"  # noqa: S105 - demo mode only, printed on start
DEMO_USERS = (("coder", Role.CODER), ("manager", Role.MANAGER), ("admin", Role.ADMIN))


def ensure_demo_users(session: Session) -> list[str]:
    """`serve --demo`: users coder, manager and admin (password DEMO_PASSWORD) if missing."""
    added = []
    for username, role in DEMO_USERS:
        if find_user(session, username) is None:
            create_user(
                session,
                username,
                role,
                DEMO_PASSWORD,
                display_name=username.title(),
                actor="demo",
                via="demo",
            )
            added.append(username)
    return added


def active_usernames(session: Session) -> list[str]:
    """Who an order can be assigned to."""
    return list(
        session.exec(select(User.username).where(User.active == True).order_by(User.username))  # noqa: E712
    )
