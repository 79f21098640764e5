"""The contract's vocabularies: message and order statuses, finding codes and severities."""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    """Where a received HL7 message stands (the inbound store, before and after reading)."""

    RECEIVED = "received"  # stored and acknowledged, not yet read into orders
    READ = "read"  # read into one or more orders
    ERROR = "error"  # could not be read as orders; reason kept, reprocessable
    REJECTED = "rejected"  # answered AR/AE at intake (kept for the record, never read)


class OrderStatus(StrEnum):
    RECEIVED = "received"
    VERIFIED = "verified"
    HELD = "held"
    AWAITING_OFFICE = "awaiting_office"
    RELEASED = "released"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    ERROR = "error"
    CANCELLED = "cancelled"


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
