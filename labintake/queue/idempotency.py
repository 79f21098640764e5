"""API idempotency keys, bound to the user, the action, the order and the body.

A script that retries an action sends the same `Idempotency-Key`: the retry is answered with
the order's current state and nothing is done twice (the guard's replay detection, see
`labintake.queue.guard`). The key names one request only. Sent again with anything else (a
different action, order or body), it is refused with IdempotencyKeyReusedError (HTTP 422)
rather than answered as if that other request had been done.

The key is stored in the transaction of the action it came with: when the action fails, the
key is not taken, and a corrected request may use it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from labintake.errors import ConcurrentChangeError, IdempotencyKeyReusedError
from labintake.models.users import IdempotencyKey

__all__ = ["bind_idempotency_key", "request_fingerprint"]


def request_fingerprint(action: str, order_id: int, body: dict[str, Any]) -> str:
    """SHA-256 of the request a key stands for (the user is part of the key's identity)."""
    canonical = json.dumps(
        {"action": action, "order_id": order_id, "body": body},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def bind_idempotency_key(
    session: Session, username: str, key: str, action: str, order_id: int, body: dict[str, Any]
) -> None:
    """Take `key` for this request (in the caller's transaction), or refuse its reuse."""
    if not key:
        return
    fingerprint = request_fingerprint(action, order_id, body)
    existing = session.exec(
        select(IdempotencyKey).where(IdempotencyKey.username == username, IdempotencyKey.key == key)
    ).first()
    if existing is not None:
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReusedError(
                f"this Idempotency-Key was used for another request ({existing.action} on "
                f"order {existing.order_id}); send a new key with each new request"
            )
        return  # the same request again: answered with the current state
    session.add(
        IdempotencyKey(
            username=username, key=key, fingerprint=fingerprint, action=action, order_id=order_id
        )
    )
    try:
        session.flush()
    except IntegrityError as exc:  # the same key in a request running alongside
        session.rollback()
        raise ConcurrentChangeError(
            "a request with this Idempotency-Key is being processed; retry it in a moment",
            order_id=order_id,
        ) from exc
