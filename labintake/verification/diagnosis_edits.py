"""Diagnosis edits beyond validity: sex and age conflicts, an external cause code as the only
diagnosis, a manifestation code without its underlying condition, and an unspecified code sent
with a specific code of the same family.

Sources: sex and age edits are data (`code_tables/dxedits/`, the CMS Medicare Code Editor's
categories); ICD-10-CM Official Guidelines I.C.20 (external cause codes are never first-listed
or the only code), I.A.13 (etiology/manifestation convention) and I.A.9.b / I.B.18
(unspecified codes only when nothing more specific is known). Like every diagnosis rule these
only report: they never choose, change or add a diagnosis, and a question to the office never
names a code the order did not send.
"""

from __future__ import annotations

from labintake.codes.dx_edits import SEXES, age_on
from labintake.codes.icd10 import normalize_icd10
from labintake.statuses import FindingCode
from labintake.verification.context import RuleContext, ValidDiagnosis

EXTERNAL_CAUSE_CHAPTER = ("V", "W", "X", "Y")  # ICD-10-CM Chapter 20, V00-Y99


def check_diagnosis_edits(ctx: RuleContext) -> None:
    if not ctx.diagnoses:
        return
    _sex_and_age(ctx)
    _external_cause_only(ctx)
    _manifestation_alone(ctx)
    if ctx.release is not None and len(ctx.diagnoses) > 1:
        _unspecified_with_specific(ctx)


def _label(dx: ValidDiagnosis) -> str:
    return f"{dx.code} ({dx.entry.description})"


def _sex_and_age(ctx: RuleContext) -> None:
    facts = ctx.facts
    edits = ctx.dx_edits
    sex = facts.patient_sex.strip().upper()[:1]
    birth = facts.patient_birth_date
    age = age_on(birth, facts.date_of_service) if birth is not None else None
    for dx in ctx.diagnoses:
        conflict = edits.sex_conflict(dx.code, sex) if sex in SEXES else None
        if conflict is not None:
            ctx.add(
                FindingCode.DX_SEX_CONFLICT,
                dx.location,
                f"{_label(dx)} is a diagnosis for {SEXES[conflict.sex]} patients "
                f"({conflict.name}), but PID-8 gives the patient's sex as {SEXES[sex]}. Check "
                "the registration and the diagnosis; the sex recorded at registration can "
                "differ from the one relevant to care. When the record supports both, Medicare "
                "claims carry condition code 45 (institutional) or modifier KX so the sex edits "
                f"pass (MLN Matters MM6638). Source: {conflict.source}.",
                f"The order gives {dx.code} ({dx.entry.description}) as the reason for "
                f"testing, and the patient's sex on the order is {SEXES[sex]}. Please confirm "
                "the patient's information and the reason for the test as documented in the "
                "patient's record.",
                subject=dx.code,
                reference={"edit": conflict.name, "sex_sent": sex, "source": conflict.source},
            )
        if age is None or age < 0:
            continue
        too = edits.age_conflict(dx.code, age)
        if too is not None:
            birth_text = f"{birth:%Y-%m-%d}" if birth is not None else ""
            ctx.add(
                FindingCode.DX_AGE_CONFLICT,
                dx.location,
                f"{_label(dx)} is a {too.name} diagnosis (ages {too.min_age}-{too.max_age}), "
                f"but the patient is {age} on the date of service (born {birth_text}, "
                "PID-7). Either the birth date or the diagnosis is wrong. "
                f"Source: {too.source}.",
                f"The order gives {dx.code} ({dx.entry.description}) as the reason for "
                f"testing for a patient born {birth_text}. Please confirm the patient's date "
                "of birth and the reason for the test as documented in the patient's record.",
                subject=dx.code,
                reference={
                    "edit": too.name,
                    "age": age,
                    "min_age": too.min_age,
                    "max_age": too.max_age,
                    "source": too.source,
                },
            )


def _external_cause_only(ctx: RuleContext) -> None:
    """Guideline I.C.20: external cause codes describe how an injury or condition came about;
    they are never the first-listed diagnosis, so they cannot be the only one."""
    if not _all_read(ctx):
        return  # a diagnosis that could not be read is held on its own; it may be the condition
    if not all(dx.code.startswith(EXTERNAL_CAUSE_CHAPTER) for dx in ctx.diagnoses):
        return
    first = ctx.diagnoses[0]
    codes = ", ".join(_label(d) for d in ctx.diagnoses)
    ctx.add(
        FindingCode.DX_EXTERNAL_CAUSE_ONLY,
        first.location,
        f"The only usable diagnosis is an external cause code: {codes}. External cause codes "
        "(V00-Y99) say how an injury or health condition came about; they are never "
        "first-listed and never stand alone (ICD-10-CM guideline I.C.20). The order needs "
        "the condition itself.",
        f"The order gives {', '.join(d.code for d in ctx.diagnoses)} "
        f"({'; '.join(d.entry.description for d in ctx.diagnoses)}), which describes how an "
        "injury or condition came about, not the condition. Please provide the reason for "
        "the test (the injury, condition, sign or symptom) as documented in the patient's "
        "record.",
        subject="|".join(d.code for d in ctx.diagnoses),
        reference={"codes": [d.code for d in ctx.diagnoses], "guideline": "I.C.20"},
    )


def _all_read(ctx: RuleContext) -> bool:
    """Every diagnosis sent is in the release in force."""
    sent = {normalize_icd10(d.code) for d in ctx.facts.diagnoses}
    return sent <= {d.code for d in ctx.diagnoses}


def _is_manifestation(ctx: RuleContext, dx: ValidDiagnosis) -> bool:
    if dx.entry.manifestation:
        return True
    release = ctx.release
    return release is not None and any(a.manifestation for a in release.ancestors(dx.code))


def _manifestation_alone(ctx: RuleContext) -> None:
    """Guideline I.A.13: a manifestation code ("in diseases classified elsewhere") is reported
    only with, and after, the code of its underlying condition."""
    manifestations = [dx for dx in ctx.diagnoses if _is_manifestation(ctx, dx)]
    if not manifestations or not _all_read(ctx):
        return
    others = [
        dx
        for dx in ctx.diagnoses
        if dx not in manifestations and not dx.code.startswith(EXTERNAL_CAUSE_CHAPTER)
    ]
    if others:
        return
    for dx in manifestations:
        ctx.add(
            FindingCode.DX_MANIFESTATION_ALONE,
            dx.location,
            f"{_label(dx)} is a manifestation code: it describes a condition caused by "
            "another disease and is reported only together with, and after, the code of the "
            "underlying disease (ICD-10-CM guideline I.A.13, etiology/manifestation). The "
            "order sends no underlying condition.",
            f"The order gives {dx.code} ({dx.entry.description}) as the reason for testing "
            "but does not state the underlying disease. Please provide the underlying "
            "condition as documented in the patient's record.",
            subject=dx.code,
            reference={"guideline": "I.A.13"},
        )


def _is_unspecified(dx: ValidDiagnosis) -> bool:
    return "unspecified" in dx.entry.description.lower()


def _unspecified_with_specific(ctx: RuleContext) -> None:
    """An unspecified code whose family (the codes under its parent) also has a more specific
    code on the order: the specific code already says what the unspecified one leaves open
    (guidelines I.A.9.b and I.B.18). A warning for the coder; no question to the office."""
    for dx in ctx.diagnoses:
        parent = dx.entry.parent
        if not parent or not _is_unspecified(dx):
            continue
        prefix = parent if "." in parent else parent + "."
        specific = [
            other
            for other in ctx.diagnoses
            if other.code != dx.code
            and other.code.startswith(prefix)
            and not _is_unspecified(other)
        ]
        if not specific:
            continue
        names = ", ".join(_label(s) for s in specific)
        ctx.add(
            FindingCode.DX_UNSPECIFIED_WITH_SPECIFIC,
            dx.location,
            f"{_label(dx)} is an unspecified code, and the order also sends {names} from the "
            f"same family ({parent}). When the record supports the specific code, the "
            "unspecified one adds nothing (ICD-10-CM guidelines I.A.9.b, I.B.18); check "
            "whether both describe the same condition.",
            None,
            subject=dx.code,
            reference={"family": parent, "specific": [s.code for s in specific]},
        )
