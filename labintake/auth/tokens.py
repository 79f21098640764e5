"""API bearer tokens: shown once at creation, stored as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, select

from labintake.db import utcnow
from labintake.errors import NotFoundError
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


def create_token(session: Session, username: str) -> str:
    """A new bearer token for `username`; the clear token is returned once and never stored."""
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None or user.id is None:
        raise NotFoundError(f"no user {username!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=_digest(token), prefix=token[:12]))
    session.flush()
    return token


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
