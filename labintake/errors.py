"""The one exception tree of labintake.

    LabintakeError
    ├── ConfigurationError          bad settings or interface definitions
    ├── HL7Error                    a message we cannot take as it is (mapped to an ACK/NAK)
    │   ├── FramingError            MLLP framing broken or message over the size limit
    │   ├── HeaderError             MSH missing or unreadable (-> AE/AR with ERR)
    │   ├── UnsupportedMessageError type/version/sender we do not take (-> AR)
    │   └── OrderReadError          stored message whose orders cannot be read (-> status error)
    ├── StorageError                the database refused a write (-> no AA; NAK or close)
    ├── CodeTableError              a code table is missing, corrupt or fails its checksum
    ├── NotAuthenticatedError       no valid session or token (-> HTTP 401 / login page)
    ├── NotFoundError               no such order, message or user (-> HTTP 404)
    ├── TooManyAttemptsError        sign-in attempts over the rate limit (-> HTTP 429)
    ├── BusyError                   a bounded resource is taken; try again soon (-> HTTP 503)
    ├── IdempotencyKeyReusedError   an API key sent again with another request (-> HTTP 422)
    └── WorkflowError               an action not allowed in the order's state (-> HTTP 409)
        ├── ConcurrentChangeError   someone else changed the order first
        └── PermissionDeniedError   role may not do this (-> HTTP 403)
            ├── HeldByAnotherError  the order is another coder's: take it over, or leave it
            └── PasswordChangeRequiredError  a new password first (-> its page)

HL7 errors carry what an ERR segment needs: the location, an HL7 table 0357 code and text.
Mapping to ACK codes lives in `labintake.hl7.ack`; mapping to HTTP lives in the web layer.
"""

from __future__ import annotations


class LabintakeError(Exception):
    """Base of every error labintake raises on purpose."""


class ConfigurationError(LabintakeError):
    pass


class HL7Error(LabintakeError):
    """An error about an HL7 message, with what an ERR segment needs.

    `error_code` is from HL7 table 0357 (100 segment sequence error, 101 required field
    missing, 102 data type error, 103 table value not found, 200 unsupported message type,
    201 unsupported event code, 202 unsupported processing id, 203 unsupported version id,
    204 unknown key identifier, 205 duplicate key identifier, 206 application record locked,
    207 application internal error).
    """

    def __init__(self, text: str, *, location: str = "", error_code: str = "207") -> None:
        super().__init__(text)
        self.text = text
        self.location = location
        self.error_code = error_code


class FramingError(HL7Error):
    """The frame cannot be taken as it came (e.g. over the size limit): answered AR."""


class HeaderError(HL7Error):
    """MSH cannot be read or is not acceptable."""


class UnsupportedMessageError(HL7Error):
    """A message type, event, processing id or version this service does not take."""


class OrderReadError(HL7Error):
    """The message is not a readable order (kept in the error queue, reprocessable)."""


class StorageError(LabintakeError):
    pass


class CodeTableError(LabintakeError):
    pass


class NotAuthenticatedError(LabintakeError):
    pass


class NotFoundError(LabintakeError):
    pass


class TooManyAttemptsError(LabintakeError):
    """Carries how many seconds to wait before the next attempt may pass."""

    def __init__(self, text: str, *, retry_after: int) -> None:
        super().__init__(text)
        self.retry_after = max(1, retry_after)


class BusyError(LabintakeError):
    """A bounded resource (the password-hashing slots) is taken: refused now, not queued."""

    retry_after = 1


class IdempotencyKeyReusedError(LabintakeError):
    """An `Idempotency-Key` already used for a different request (action, order or body)."""


class WorkflowError(LabintakeError):
    """A coder action the rules refuse; `field` names the form field at fault, if one is."""

    def __init__(self, text: str, *, field: str = "") -> None:
        super().__init__(text)
        self.field = field


class ConcurrentChangeError(WorkflowError):
    """Carries the order and its current row version, so the caller can show the fresh state."""

    def __init__(
        self, text: str, *, order_id: int | None = None, current_row_version: int | None = None
    ) -> None:
        super().__init__(text)
        self.order_id = order_id
        self.current_row_version = current_row_version


class PermissionDeniedError(WorkflowError):
    pass


class HeldByAnotherError(PermissionDeniedError):
    """A claim on an order another coder holds: nothing changed; the caller asks whether to
    take it over (`holder`, the username, and `order_id` say which)."""

    def __init__(self, text: str, *, order_id: int, holder: str) -> None:
        super().__init__(text)
        self.order_id = order_id
        self.holder = holder


class PasswordChangeRequiredError(PermissionDeniedError):
    """Signed in with a password an administrator chose: a new one is needed before anything
    else (the web screen sends the browser to the password page)."""
