"""Synthetic ORM^O01 orders for load: nine segments, unique control ids, made-up patients.

Every patient, provider and office here is invented. The NPI is the standard example number
with a valid check digit; diagnoses and tests are ordinary outpatient lab pairs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

SENDING_APPLICATION = "BENCHEHR"
SENDING_FACILITY = "BENCHCLINIC"

_FAMILY = ("HARLOW", "QUILLAN", "BRANDT", "OKAFOR", "LINDQVIST", "MARCHETTI", "TANAKA", "ROWE")
_GIVEN = ("AVERY", "JORDAN", "MORGAN", "RILEY", "CASEY", "QUINN", "ROBIN", "SAGE")
_TESTS = (
    ("80061", "LIPID PANEL", "E78.5", "Hyperlipidemia, unspecified"),
    ("83036", "HEMOGLOBIN A1C", "E11.9", "Type 2 diabetes mellitus without complications"),
    ("85025", "CBC WITH DIFFERENTIAL", "D64.9", "Anemia, unspecified"),
    ("80053", "COMPREHENSIVE METABOLIC PANEL", "I10", "Essential (primary) hypertension"),
    ("84443", "TSH", "E03.9", "Hypothyroidism, unspecified"),
)
_SECOND_DX = ("R53.83", "Other fatigue")
# Medicare Beneficiary Identifier characters (no S, L, O, I, B, Z).
_MBI_LETTERS = "ACDEFGHJKMNPQRTUVWXY"
_MBI_ALNUM = _MBI_LETTERS + "0123456789"


def synthetic_mbi(rng: random.Random) -> str:
    """A made-up MBI of the right form. Each patient needs one of their own: orders are
    grouped by beneficiary, so one shared MBI made every order after the first of its test
    a repeat of it, held by the rules."""
    digits, letters, alnum = "0123456789", _MBI_LETTERS, _MBI_ALNUM
    form = ("123456789", letters, alnum, digits, letters, alnum, digits, letters, letters)
    return "".join(rng.choice(chars) for chars in (*form, digits, digits))


@dataclass(frozen=True, slots=True)
class SyntheticMessage:
    """One ORM^O01 as bytes (segments separated by ``\\r``) with its MSH-10 control id."""

    control_id: str
    raw: bytes


def order_message(control_id: str, rng: random.Random, when: datetime) -> bytes:
    """A nine-segment ORM^O01 (v2.5.1, original acknowledgment mode) for a made-up patient."""
    family, given = rng.choice(_FAMILY), rng.choice(_GIVEN)
    code, name, dx, dx_text = rng.choice(_TESTS)
    mrn = f"BM{rng.randrange(10**7):07d}"
    birth = f"{rng.randrange(1940, 2005)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    sex = rng.choice("FM")
    mbi = synthetic_mbi(rng)
    stamp = when.strftime("%Y%m%d%H%M%S")
    placer = f"PL{control_id}"
    provider = "1234567893^WEXLER^DANA^^^^^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI"
    segments = (
        f"MSH|^~\\&|{SENDING_APPLICATION}|{SENDING_FACILITY}|LABINTAKE|LAB|{stamp}||"
        f"ORM^O01|{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^BENCHCLINIC^MR||{family}^{given}^A||{birth}|{sex}|||"
        "12 SAMPLE ST^^SPRINGFIELD^IL^62701^USA||^PRN^PH^^1^217^5550100",
        "PV1|1|O|||||1234567893^WEXLER^DANA",
        "IN1|1|MCRB|CMS|MEDICARE PART B|||||||||||1|"
        f"{family}^{given}|01|{birth}||||||||||||||||||{mbi}",
        f"ORC|NW|{placer}^{SENDING_APPLICATION}||||||||||{provider}|||{stamp}||||||"
        "BENCH FAMILY PRACTICE|40 EXAMPLE AVE^^SPRINGFIELD^IL^62704|^WPN^PH^^1^217^5550199",
        f"OBR|1|{placer}^{SENDING_APPLICATION}||{code}^{name}^CPT4|R|{stamp}|{stamp}"
        f"|||||||||{provider}",
        f"DG1|1|I10|{dx}^{dx_text}^I10||{stamp}|W",
        f"DG1|2|I10|{_SECOND_DX[0]}^{_SECOND_DX[1]}^I10||{stamp}|W",
        "NTE|1|P|Synthetic benchmark order; patient is invented.",
    )
    return ("\r".join(segments) + "\r").encode("ascii")


def synthetic_orders(
    prefix: str, count: int | None = None, seed: int = 7
) -> Iterator[SyntheticMessage]:
    """Orders with control ids ``<prefix><n>`` (unique per prefix); endless when count is None."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    n = 0
    while count is None or n < count:
        control_id = f"{prefix}{n:08d}"
        yield SyntheticMessage(
            control_id, order_message(control_id, rng, start + timedelta(seconds=n))
        )
        n += 1
