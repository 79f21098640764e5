"""Diagnosis rules: missing, invalid, not billable, not valid on the date of service, Excludes1
(then the edits of `diagnosis_edits`: sex, age, external cause, manifestation, unspecified).

The rules only report; they never choose, change or add a diagnosis. For a header code the
valid billable codes below it are attached as reference for the coder, never for the office.
"""

from __future__ import annotations

from labintake.codes.icd10 import normalize_icd10
from labintake.statuses import FindingCode
from labintake.verification.context import RuleContext, ValidDiagnosis
from labintake.verification.diagnosis_edits import check_diagnosis_edits
from labintake.verification.facts import DiagnosisFacts
from labintake.verification.matching import excludes1_pair

ICD10_SYSTEMS = frozenset(
    {"", "I10", "I10C", "I10CM", "ICD10", "ICD-10", "ICD10CM", "ICD-10-CM", "ICD10-CM"}
)
ICD9_SYSTEMS = frozenset({"I9", "I9C", "I9CM", "ICD9", "ICD-9", "ICD9CM", "ICD-9-CM"})
CHILDREN_SHOWN = 20


def check_diagnoses(ctx: RuleContext) -> None:
    facts = ctx.facts
    if not facts.diagnoses:
        tests = ", ".join(ctx.test_name(t) for t in facts.tests) or "the tests"
        ctx.add(
            FindingCode.DX_MISSING,
            "DG1-3",
            "No diagnosis came with this order (no DG1-3). Every test needs the reason it "
            "was ordered, taken from the ordering provider's documentation.",
            f"The order for {tests} (date of service {facts.date_of_service:%Y-%m-%d}) arrived "
            "without a diagnosis or reason for testing. Please provide the reason for the "
            "tests as documented in the patient's record.",
            subject="",
        )
        return
    release = ctx.release
    seen: set[str] = set()
    for dx in facts.diagnoses:
        code = normalize_icd10(dx.code)
        if not code:
            _invalid(ctx, dx, code, "DG1-3 is empty")
            continue
        if code in seen:
            continue  # the same code twice says nothing new
        seen.add(code)
        system = dx.system.strip().upper()
        if system in ICD9_SYSTEMS:
            _invalid(
                ctx,
                dx,
                code,
                f"{dx.code} is sent as {dx.system} (ICD-9-CM); only ICD-10-CM codes are "
                "valid for dates of service since 2015-10-01",
            )
            continue
        entry = release.get(code) if release is not None else None
        if entry is None:
            if not _not_effective(ctx, dx, code):
                reason = (
                    f"{code} is not an ICD-10-CM code in {release.version}"
                    if release is not None
                    else f"{code} cannot be checked: no ICD-10-CM release is loaded"
                )
                if system and system not in ICD10_SYSTEMS:
                    reason += f" (coding system sent: {dx.system})"
                _invalid(ctx, dx, code, reason)
            continue
        ctx.diagnoses.append(ValidDiagnosis(code=code, location=dx.location, entry=entry))
        if not entry.billable:
            _not_billable(ctx, dx, code)
    if len(ctx.diagnoses) > 1 and release is not None:
        _excludes1(ctx)
    check_diagnosis_edits(ctx)


def _invalid(ctx: RuleContext, dx: DiagnosisFacts, code: str, reason: str) -> None:
    sent = f"'{dx.code}'" + (f" ({dx.text})" if dx.text else "")
    ctx.add(
        FindingCode.DX_INVALID,
        dx.location,
        f"{reason}. Ask the office for the diagnosis; do not guess it.",
        f"The diagnosis sent as {sent} could not be read as a valid ICD-10-CM code. Please "
        "provide the diagnosis as documented in the patient's record.",
        subject=code or dx.code,
        reference={"sent": dx.code, "system": dx.system},
    )


def _not_effective(ctx: RuleContext, dx: DiagnosisFacts, code: str) -> bool:
    """Report a code valid in another release but not the one in force; False if none has it."""
    release = ctx.release
    dos = ctx.facts.date_of_service
    for other in ctx.tables.icd10_releases():
        if release is not None and other.version == release.version:
            continue
        entry = other.get(code)
        if entry is None:
            continue
        window = f"{other.effective_from:%Y-%m-%d} to " + (
            f"{other.effective_to:%Y-%m-%d}" if other.effective_to else "now"
        )
        if release is None:
            in_force = "no release in force"
        elif ctx.release_in_force:
            in_force = (
                f"the release in force ({release.version}, from {release.effective_from:%Y-%m-%d})"
            )
        else:
            in_force = (
                f"{release.version}, the newest loaded release, used because no loaded release "
                "covers the date"
            )
        ctx.add(
            FindingCode.DX_NOT_EFFECTIVE,
            dx.location,
            f"{code} ({entry.description}) is not valid on the date of service "
            f"{dos:%Y-%m-%d}: it is not in {in_force}; it exists in {other.version} "
            f"({window}). There is no grace period.",
            f"The diagnosis {code} sent with this order is not a valid code for the date of "
            f"service {dos:%Y-%m-%d}. Please provide the diagnosis as documented in the "
            "patient's record for that date.",
            subject=code,
            reference={
                "valid_in": other.version,
                "valid_from": other.effective_from.isoformat(),
                "valid_to": other.effective_to.isoformat() if other.effective_to else None,
                "in_force": release.version if release is not None else None,
            },
        )
        return True
    return False


def _not_billable(ctx: RuleContext, dx: DiagnosisFacts, code: str) -> None:
    release = ctx.release
    assert release is not None
    entry = release.get(code)
    assert entry is not None
    children = release.billable_children(code, limit=CHILDREN_SHOWN)
    reference = {
        "children": [[c.code, c.description] for c in children],
        "children_note": "coder reference only; never proposed to the office",
    }
    bare_length = len(code.replace(".", ""))
    if entry.seventh_char_required and bare_length == 6:
        kind = "needs its 7th character"
        detail = (
            f"{code} ({entry.description}) needs its 7th character (placeholder X fills "
            "missing positions, e.g. T36.0X1A)."
        )
        ask = (
            "the complete diagnosis as documented in the patient's record, including the "
            "encounter (episode of care)"
        )
    elif entry.header:
        kind = "header"
        detail = (
            f"{code} ({entry.description}) is a category heading with codes below it, not a "
            "complete code: it needs more characters."
        )
        ask = "the complete diagnosis as documented in the patient's record"
    else:
        kind = "not billable"
        detail = f"{code} ({entry.description}) is not a complete, reportable code."
        ask = "the complete diagnosis as documented in the patient's record"
    reference["kind"] = kind
    if children:
        detail += f" Valid codes below it are listed for reference ({len(children)} shown)."
    ctx.add(
        FindingCode.DX_NOT_BILLABLE,
        dx.location,
        detail,
        f"The diagnosis {code} ({entry.description}) sent with this order is incomplete. "
        f"Please provide {ask}.",
        subject=code,
        reference=reference,
    )


def _excludes1(ctx: RuleContext) -> None:
    release = ctx.release
    assert release is not None
    valid = ctx.diagnoses
    for i, first in enumerate(valid):
        for second in valid[i + 1 :]:
            if first.code == second.code:
                continue
            if not excludes1_pair(release, first.code, second.code):
                continue
            pattern = release.excludes1_conflict(first.code, second.code) or "Excludes1"
            a, b = first.entry, second.entry
            ctx.add(
                FindingCode.DX_EXCLUDES1,
                second.location,
                f"{a.code} ({a.description}) and {b.code} ({b.description}) form an "
                f"Excludes1 pair (note: {pattern}): they are not normally reported together. "
                "Check the documentation; report both only if the conditions are unrelated.",
                f"The order lists both {a.code} ({a.description}) and {b.code} "
                f"({b.description}), which are not normally recorded together. Please clarify "
                "the patient's condition(s) as documented in the record.",
                subject=f"{a.code}|{b.code}",
                reference={"pattern": pattern, "first": first.location},
            )
