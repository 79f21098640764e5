"""Finding codes in words, for the coder's screens (the code itself stays on hover)."""

from __future__ import annotations

LABELS = {
    "DX_MISSING": "No diagnosis",
    "DX_INVALID": "Diagnosis not a valid code",
    "DX_NOT_BILLABLE": "Diagnosis not billable",
    "DX_NOT_EFFECTIVE": "Diagnosis not valid on the date of service",
    "DX_EXCLUDES1": "Diagnoses exclude each other",
    "NECESSITY_NOT_SUPPORTED": "Diagnosis does not support the test",
    "NECESSITY_FREQUENCY": "Over the frequency limit",
    "NECESSITY_UNVERIFIED": "Coverage not checked",
    "SCREENING_ON_DIAGNOSTIC": "Screening diagnosis on a diagnostic test",
    "TEST_UNKNOWN": "Unknown test code",
    "TEST_CODE_MISMATCH": "Test codes disagree",
    "BUNDLED_COMPONENT": "Panel and its component",
    "UNITS_OVER_LIMIT": "Units over the limit",
    "PROVIDER_MISSING": "No ordering provider",
    "PROVIDER_NPI_INVALID": "Provider NPI not valid",
    "DUPLICATE_ORDER": "Duplicate order",
    "SIGNATURE_MISSING": "Signature missing",
    "LIS_REJECTED": "Refused by the lab system",
    "CODE_TABLES_OUT_OF_DATE": "Code tables out of date",
    "DX_SEX_CONFLICT": "Diagnosis does not fit the patient's sex",
    "DX_AGE_CONFLICT": "Diagnosis does not fit the patient's age",
    "DX_EXTERNAL_CAUSE_ONLY": "Only an external cause code",
    "DX_MANIFESTATION_ALONE": "Manifestation code without its disease",
    "DX_UNSPECIFIED_WITH_SPECIFIC": "Unspecified code beside a specific one",
    "TEST_MEDICARE_PARTS": "Panel billed to Medicare by its parts",
}


def finding_label(code: str) -> str:
    """'DX_NOT_BILLABLE' -> 'Diagnosis not billable'; an unlisted code in plain words."""
    return LABELS.get(code) or code.replace("_", " ").capitalize()
