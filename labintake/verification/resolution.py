"""Test rules: match each OBR-4 to the lab's catalog; unknown codes and codes that disagree.

OBR-4 may carry two codes (components 1-3 and 4-6, e.g. a local code and a LOINC, or a LOINC
and a CPT). Both are looked up; when they name different catalog tests the order line is
ambiguous and the test is not used by the later rules.
"""

from __future__ import annotations

from labintake.statuses import FindingCode
from labintake.verification.context import RuleContext


def resolve_tests(ctx: RuleContext) -> None:
    catalog = ctx.catalog
    codes = ctx.facts.interface_codes
    for test in ctx.facts.tests:
        primary = catalog.resolve(test.code, test.system, codes) if test.code else None
        alternate = (
            catalog.resolve(test.alt_code, test.alt_system, codes) if test.alt_code else None
        )
        if primary is not None and alternate is not None and primary.code != alternate.code:
            ctx.resolved.append(None)
            ctx.add(
                FindingCode.TEST_CODE_MISMATCH,
                test.location,
                f"OBR-4 names two different tests: {test.code} ({test.system or 'local'}) is "
                f"{primary.description} ({primary.cpt}), but {test.alt_code} "
                f"({test.alt_system or 'local'}) is {alternate.description} ({alternate.cpt}).",
                f"The order line '{test.text or test.code}' carries codes for two different "
                f"tests ({primary.description} and {alternate.description}). Please confirm "
                "which test is ordered.",
                test_seq=test.seq,
                subject=f"{primary.code}|{alternate.code}",
                reference={
                    "codes": [
                        [test.code, test.system, primary.code, primary.cpt],
                        [test.alt_code, test.alt_system, alternate.code, alternate.cpt],
                    ]
                },
            )
            continue
        entry = primary or alternate
        ctx.resolved.append(entry)
        if entry is None:
            sent = f"{test.code} ({test.system or 'local'})"
            if test.alt_code:
                sent += f" / {test.alt_code} ({test.alt_system or 'local'})"
            mapped = " or the sender's code map" if ctx.facts.interface else ""
            ctx.add(
                FindingCode.TEST_UNKNOWN,
                test.location,
                f"OBR-4 {sent} '{test.text}' is not in the lab's test catalog "
                f"({catalog.version}){mapped}: unknown or retired test code.",
                f"The order lists a test '{test.text or test.code}' (code {test.code}) that is "
                "not on the lab's test menu. Please confirm which test is ordered.",
                test_seq=test.seq,
                subject=test.code,
                reference={"sent": [test.code, test.system, test.alt_code, test.alt_system]},
            )
