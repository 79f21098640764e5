"""Every state the service stores, in one place: message, order, finding, office query and
outbox statuses, delivery outcomes, finding codes and severities, and the status groups.

The values are data in existing databases: a member's value never changes. These are StrEnums,
so a member is its value (compare, store and serialise the member itself; no `.value`). Which
order status may follow which is `labintake.lifecycle`.
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    """Where a received HL7 message stands (the inbound store, before and after reading)."""

    RECEIVED = "received"  # stored and acknowledged, not yet read into orders
    READ = "read"  # read into one or more orders
    ERROR = "error"  # could not be read as orders; reason kept, reprocessable
    REJECTED = "rejected"  # answered AR/AE at intake (kept for the record, never read)


class OrderStatus(StrEnum):
    """Where an order stands (the moves between them: `labintake.lifecycle.TRANSITIONS`)."""

    RECEIVED = "received"  # read from a message, not yet verified
    VERIFIED = "verified"  # no open hold: the release worker takes it
    HELD = "held"  # an open hold finding: a coder looks
    AWAITING_OFFICE = "awaiting_office"  # a coder asked the ordering office; waits for it
    RELEASED = "released"  # its message is in the outbox for the LIS
    DELIVERED = "delivered"  # the LIS acknowledged it
    REJECTED = "rejected"  # a coder rejected it (the office is told why)
    ERROR = "error"  # the rules failed on it; reason kept
    CANCELLED = "cancelled"  # the placer cancelled it (ORC-1 CA)


# A coder's queue: the orders that need a person.
QUEUE_STATUSES = (OrderStatus.HELD, OrderStatus.AWAITING_OFFICE)
# What a coder may release: a queued order, or a verified one before the release worker takes
# it. Never a received one: it has not been verified yet.
RELEASABLE = (*QUEUE_STATUSES, OrderStatus.VERIFIED)
# Gone to the LIS (a second release is a no-op for the coder).
RELEASED_STATUSES = (OrderStatus.RELEASED, OrderStatus.DELIVERED)
# What a coder's correction or a replay may verify again.
REVERIFIABLE = (OrderStatus.RECEIVED, *RELEASABLE)


class FindingState(StrEnum):
    """A finding's life across verifications of its order."""

    OPEN = "open"  # raised by the latest verification, not overridden
    OVERRIDDEN = "overridden"  # a coder released over it with a written reason
    RESOLVED = "resolved"  # no longer raised


# The findings that still stand (raised and not resolved).
LIVE_FINDING_STATES = (FindingState.OPEN, FindingState.OVERRIDDEN)


class QueryStatus(StrEnum):
    """An office query (a compliant question to the ordering office)."""

    OPEN = "open"  # written, no answer yet
    ANSWERED = "answered"  # the office's answer was recorded
    CLOSED = "closed"  # no longer needed
    CANCELLED = "cancelled"  # sent in error


# How a coder ends a query by hand.
QUERY_CLOSINGS = (QueryStatus.CLOSED, QueryStatus.CANCELLED)


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for (re)delivery
    DELIVERED = "delivered"  # acknowledged AA/CA by the receiver
    REFUSED = "refused"  # answered AE/AR: a person must look (the order is held)
    DEAD = "dead"  # gave up after the configured attempts; re-sendable from the screen
    SUPERSEDED = "superseded"  # replaced by a newer release of the same order


# Release messages a newer release of the same order replaces.
SUPERSEDABLE = (OutboxStatus.PENDING, OutboxStatus.DEAD, OutboxStatus.REFUSED)


class OutboxKind(StrEnum):
    RELEASE = "release"  # the order to the LIS
    REPLY = "reply"  # an order response to the placer


class DeliveryOutcome(StrEnum):
    """What happened to one claimed outbound message on one attempt."""

    DELIVERED = "delivered"  # acknowledged AA/CA
    REFUSED = "refused"  # answered AE/AR
    RETRY = "retry"  # no usable answer: tried again later
    SKIPPED = "skipped"  # not tried (the claim is given back)


class Severity(StrEnum):
    HOLD = "hold"
    WARN = "warn"
    INFO = "info"


class FindingCode(StrEnum):
    DX_MISSING = "DX_MISSING"
    DX_INVALID = "DX_INVALID"
    DX_NOT_BILLABLE = "DX_NOT_BILLABLE"
    DX_NOT_EFFECTIVE = "DX_NOT_EFFECTIVE"
    DX_EXCLUDES1 = "DX_EXCLUDES1"
    DX_SEX_CONFLICT = "DX_SEX_CONFLICT"
    DX_AGE_CONFLICT = "DX_AGE_CONFLICT"
    DX_EXTERNAL_CAUSE_ONLY = "DX_EXTERNAL_CAUSE_ONLY"
    DX_MANIFESTATION_ALONE = "DX_MANIFESTATION_ALONE"
    DX_UNSPECIFIED_WITH_SPECIFIC = "DX_UNSPECIFIED_WITH_SPECIFIC"
    NECESSITY_NOT_SUPPORTED = "NECESSITY_NOT_SUPPORTED"
    NECESSITY_FREQUENCY = "NECESSITY_FREQUENCY"
    # The test's coverage policy could not be checked: the catalog names a policy the coverage
    # tables do not hold, or the policy's lists are incomplete and say nothing of the diagnoses.
    NECESSITY_UNVERIFIED = "NECESSITY_UNVERIFIED"
    SCREENING_ON_DIAGNOSTIC = "SCREENING_ON_DIAGNOSTIC"
    TEST_UNKNOWN = "TEST_UNKNOWN"
    TEST_CODE_MISMATCH = "TEST_CODE_MISMATCH"
    BUNDLED_COMPONENT = "BUNDLED_COMPONENT"
    TEST_MEDICARE_PARTS = "TEST_MEDICARE_PARTS"
    UNITS_OVER_LIMIT = "UNITS_OVER_LIMIT"
    PROVIDER_MISSING = "PROVIDER_MISSING"
    PROVIDER_NPI_INVALID = "PROVIDER_NPI_INVALID"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    SIGNATURE_MISSING = "SIGNATURE_MISSING"
    # No loaded ICD-10-CM release covers the date of service: the diagnoses were checked
    # against the newest one. A lab-internal problem: never a question for the office.
    CODE_TABLES_OUT_OF_DATE = "CODE_TABLES_OUT_OF_DATE"
    # The LIS answered the released order with AE/AR; its error text is the message.
    LIS_REJECTED = "LIS_REJECTED"


# Findings about the lab's own setup, not the order: never put to the ordering office.
LAB_INTERNAL_FINDINGS = frozenset({FindingCode.CODE_TABLES_OUT_OF_DATE})
