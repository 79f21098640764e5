"""People and machines allowed in: users with roles, web sessions, API tokens, the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from labintake.db import UTCDateTime, utcnow


class User(SQLModel, table=True):
    """A person who works the queue (coder), watches it (manager) or runs the service (admin)."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True, index=True)
    display_name: str = Field(default="", max_length=200)
    # The direct line an office calls back on, printed on the queries this user writes.
    phone: str = Field(default="", max_length=40)
    role: str = Field(max_length=20)  # Role
    password_hash: str = Field(default="", max_length=200)
    active: bool = True
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # Set when an administrator chose the password: the next sign-in asks for a new one.
    must_change_password: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Saved queue filters and column choices.
    preferences: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )


class WebSession(SQLModel, table=True):
    """A server-side login session; the cookie holds a random token, the table its SHA-256."""

    __tablename__ = "web_session"

    id: str = Field(primary_key=True, max_length=64)  # sha256 hex of the cookie token
    user_id: int = Field(foreign_key="app_user.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    client: str = Field(default="", max_length=200)


class ApiToken(SQLModel, table=True):
    """A bearer token for scripts; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=12)  # first characters, to tell tokens apart in lists
    name: str = Field(default="", max_length=100)  # what it is for ("LIS result feed")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class AuditEntry(SQLModel, table=True):
    """Who saw or changed what, when, with before/after: views of patient data and every change."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_order_id", "order_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=60)  # view_order, view_message, contact, correction, ...
    order_id: int | None = Field(default=None)
    message_id: int | None = Field(default=None)
    via: str = Field(default="", max_length=20)  # web | api | cli
    before: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    after: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class IdempotencyKey(SQLModel, table=True):
    """An API `Idempotency-Key` a user sent, bound to the request it came with: the action,
    the order and the body (as a SHA-256 of them). Stored with the action it made."""

    __tablename__ = "api_idempotency_key"
    __table_args__ = (Index("ux_idempotency_user_key", "username", "key", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100)
    key: str = Field(max_length=64)
    fingerprint: str = Field(max_length=64)  # sha256 hex of action, order and body
    action: str = Field(max_length=40)
    order_id: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
