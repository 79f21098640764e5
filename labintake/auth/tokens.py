"""API bearer tokens: shown once at creation, stored as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, col, select

from labintake import audit
from labintake.db import utcnow
from labintake.errors import NotFoundError, WorkflowError
from labintake.models.users import ApiToken, User

TOKEN_PREFIX = "lbi_"  # noqa: S105 - a visible prefix, not a secret


def tokens_match(sent: str, expected: str) -> bool:
    """Constant-time comparison of a token a client sent with the expected one.

    `secrets.compare_digest` refuses str with non-ASCII characters (TypeError), and a header
    may hold any: both sides are compared as UTF-8 bytes instead.
    """
    return secrets.compare_digest(
        sent.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, username: str, name: str = "") -> str:
    """A new bearer token for `username`, named for what it is for; the clear token is
    returned once and never stored."""
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None or user.id is None:
        raise NotFoundError(f"no user {username!r}")
    name = name.strip()
    if len(name) > 100:
        raise WorkflowError("a token name is at most 100 characters", field="name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=_digest(token), prefix=token[:12], name=name))
    session.flush()
    return token


def tokens_of(session: Session, user: User) -> list[ApiToken]:
    """A user's tokens, live ones first, newest first (the rows hold no secret)."""
    return list(
        session.exec(
            select(ApiToken)
            .where(ApiToken.user_id == user.id)
            .order_by(col(ApiToken.revoked_at).is_not(None), col(ApiToken.id).desc())
        )
    )


def revoke_token_of(
    session: Session, user: User, token_id: int, *, actor: str, via: str = "web"
) -> bool:
    """Revoke one of `user`'s tokens (audited); False when it was revoked already."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        raise NotFoundError(f"{user.username} has no token {token_id}")
    if row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.add(row)
    audit.record(
        session,
        actor,
        "token_revoked",
        via=via,
        before={"user": user.username, "token": row.prefix, "name": row.name},
        after={"revoked": True},
    )
    return True


def resolve_token(session: Session, token: str) -> User | None:
    """The active user a bearer token belongs to, or None."""
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == _digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now
        session.add(row)
        session.commit()
    return user


def revoke_token(session: Session, prefix: str) -> int:
    rows = list(session.exec(select(ApiToken).where(ApiToken.prefix == prefix)))
    for row in rows:
        row.revoked_at = utcnow()
        session.add(row)
    return len(rows)
