"""Server-side web sessions: random cookie token, stored hashed, idle and absolute timeouts."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlmodel import Session, delete, select

from labintake.auth.policy import DEFAULT_POLICY, LoginPolicy
from labintake.db import utcnow
from labintake.models.users import User, WebSession

# last_seen_at is written at most this often, so reading pages does not write on every request.
_TOUCH_EVERY = timedelta(seconds=60)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, client: str = "") -> tuple[str, WebSession]:
    """A new session for `user`; returns the cookie token (shown once) and the stored row."""
    assert user.id is not None
    token = secrets.token_urlsafe(32)
    row = WebSession(
        id=_digest(token), user_id=user.id, csrf_token=secrets.token_urlsafe(32), client=client
    )
    session.add(row)
    session.flush()
    return token, row


def resolve_session(
    session: Session, token: str, policy: LoginPolicy = DEFAULT_POLICY
) -> tuple[WebSession, User] | None:
    """The live session and its user for a cookie token, or None (expired sessions are ended)."""
    row = session.get(WebSession, _digest(token))
    if row is None:
        return None
    now = utcnow()
    if (
        now - row.last_seen_at > policy.idle_timeout
        or now - row.created_at > policy.max_session_age
    ):
        session.delete(row)
        session.commit()
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    if now - row.last_seen_at > _TOUCH_EVERY:
        row.last_seen_at = now
        session.add(row)
        session.commit()
    return row, user


def close_session(session: Session, token: str) -> None:
    row = session.get(WebSession, _digest(token))
    if row is not None:
        session.delete(row)


def purge_expired(session: Session, policy: LoginPolicy = DEFAULT_POLICY) -> int:
    """Delete sessions past their idle timeout; returns how many."""
    cutoff = utcnow() - policy.idle_timeout
    stale = list(session.exec(select(WebSession.id).where(WebSession.last_seen_at < cutoff)))
    if stale:
        session.exec(delete(WebSession).where(WebSession.id.in_(stale)))  # type: ignore[attr-defined]
    return len(stale)
