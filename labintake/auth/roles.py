"""Roles, in increasing order of what they may do: a manager can do what a coder can, and more."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CODER = "coder"  # works the clarification queue
    MANAGER = "manager"  # also sees the audit trail, the error queue, the dashboard
    ADMIN = "admin"  # also manages users and tokens

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """True when this role may do what `needed` may."""
        return self.rank >= needed.rank


_RANKS = {Role.CODER: 1, Role.MANAGER: 2, Role.ADMIN: 3}
