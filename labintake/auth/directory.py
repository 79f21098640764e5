"""The users as the administration screen shows them, and temporary passwords.

Reading only: every change goes through `labintake.auth.accounts` (users) and
`labintake.auth.tokens` (API tokens), which check and audit it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from labintake.auth.policy import DEFAULT_POLICY, LoginPolicy
from labintake.db import utcnow
from labintake.errors import NotFoundError
from labintake.models.users import ApiToken, AuditEntry, User

# Letters and digits that cannot be mistaken for one another when read aloud or copied.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_GROUP = 4
# Audit actions about an account, which name it in `before.user` (`after.user` when added).
ACCOUNT_ACTIONS = (
    "user_added",
    "role_changed",
    "password_changed",
    "account_unlocked",
    "user_deactivated",
    "user_reactivated",
    "token_revoked",
)


@dataclass(frozen=True, slots=True)
class Account:
    """One row of the user list."""

    user: User
    locked_until: datetime | None  # set while sign-ins are refused after failures
    live_tokens: int

    @property
    def locked(self) -> bool:
        return self.locked_until is not None


def is_locked(user: User, now: datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or utcnow())


def list_accounts(session: Session) -> list[Account]:
    """Every user, active ones first, by username, with its lockout and live token count."""
    live = (
        select(ApiToken.user_id, func.count().label("n"))
        .where(col(ApiToken.revoked_at).is_(None))
        .group_by(col(ApiToken.user_id))
        .subquery()
    )
    rows = session.exec(
        select(User, func.coalesce(live.c.n, 0))
        .outerjoin(live, live.c.user_id == User.id)
        .order_by(col(User.active).desc(), col(User.username))
    ).all()
    now = utcnow()
    return [
        Account(user, user.locked_until if is_locked(user, now) else None, int(n))
        for user, n in rows
    ]


def get_account(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"there is no user number {user_id}")
    return user


def temporary_password(policy: LoginPolicy = DEFAULT_POLICY) -> str:
    """A random password to hand over once, in groups of four (``k7pq-m3xa-9hwt-r2vd``):
    16 characters from a 31-letter alphabet (79 bits), and never shorter than the policy."""
    length = max(16, policy.min_password_length)
    letters = "".join(secrets.choice(_ALPHABET) for _ in range(length))
    return "-".join(letters[i : i + _GROUP] for i in range(0, length, _GROUP))


def account_history(session: Session, user: User, limit: int = 50) -> list[AuditEntry]:
    """What was done to `user`'s account and by whom, and its lockouts, newest first."""
    before, after = col(AuditEntry.before), col(AuditEntry.after)
    about = or_(
        before["user"].as_string() == user.username,
        after["user"].as_string() == user.username,
    )
    statement = (
        select(AuditEntry)
        .where(
            or_(
                and_(col(AuditEntry.action).in_(ACCOUNT_ACTIONS), about),
                and_(
                    col(AuditEntry.action) == "account_locked",
                    col(AuditEntry.actor) == user.username,
                ),
            )
        )
        .order_by(col(AuditEntry.id).desc())
        .limit(limit)
    )
    return list(session.exec(statement))
