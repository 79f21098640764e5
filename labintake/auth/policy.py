"""The login policy: idle timeout, lockout after repeated failures, password length."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    idle_timeout: timedelta = timedelta(minutes=30)
    max_session_age: timedelta = timedelta(hours=12)
    max_failed_logins: int = 5
    lockout: timedelta = timedelta(minutes=15)
    min_password_length: int = 10


DEFAULT_POLICY = LoginPolicy()
