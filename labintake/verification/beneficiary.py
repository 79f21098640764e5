"""Who the patient is for frequency limits: the Medicare Beneficiary Identifier when the order
carries one, else the sending facility and MRN.

Medicare limits count per beneficiary, whoever sent the earlier order, so the MBI is the
better key. Where an MBI appears in a v2 order (none of these is required by the LOI guide):

- PID-3 with identifier type code `MC` (HL7 table 0203, "patient's Medicare number"), or an
  assigning authority naming CMS (`CMS`, `MCR`, `MEDICARE`, or the MBI OID
  2.16.840.1.113883.4.927);
- PID-3 with type `MB` (member number) or `MI`, IN1-36 (policy number) or IN1-49 (insured's
  id) on a Medicare insurance: these carry any plan's member id, so they are taken only when
  the value has the MBI's form.

The MBI form (CMS, "Understanding the MBI"): 11 characters, no dashes when stored - position 1
a digit 1-9; 2, 5, 8, 9 a letter; 3 and 6 a letter or digit; 4, 7, 10, 11 a digit; letters
never S, L, O, I, B or Z.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_LETTER = "[AC-HJKMNP-RT-Y]"
_ALNUM = "[AC-HJKMNP-RT-Y0-9]"
MBI_FORM = re.compile(
    f"^[1-9]{_LETTER}{_ALNUM}[0-9]{_LETTER}{_ALNUM}[0-9]{_LETTER}{_LETTER}[0-9][0-9]$"
)
MEDICARE_AUTHORITIES = frozenset({"CMS", "MCR", "MEDICARE", "2.16.840.1.113883.4.927"})
MEDICARE_ID_TYPES = frozenset({"MC"})
MEMBER_ID_TYPES = frozenset({"MB", "MI"})


_BLANKS_AND_DASHES = re.compile(r"[\s-]+")


def normalize_mbi(value: str) -> str:
    return _BLANKS_AND_DASHES.sub("", value).upper()


def is_mbi(value: str) -> bool:
    return bool(MBI_FORM.match(normalize_mbi(value)))


def mbi_from(identifiers: Iterable[str], member_ids: Iterable[str] = ()) -> str:
    """The MBI among PID-3 identifiers (`id^^^authority^type`) and Medicare member ids
    (IN1-36 / IN1-49 of a Medicare insurance); "" when there is none."""
    for identifier in identifiers:
        parts = identifier.split("^")
        value = normalize_mbi(parts[0])
        authority = parts[3].split("&", 1)[0].strip().upper() if len(parts) > 3 else ""
        kind = parts[4].strip().upper() if len(parts) > 4 else ""
        named = kind in MEDICARE_ID_TYPES or authority in MEDICARE_AUTHORITIES
        if (named or kind in MEMBER_ID_TYPES) and is_mbi(value):
            return value
    for member_id in member_ids:
        value = normalize_mbi(member_id.split("^", 1)[0])
        if is_mbi(value):
            return value
    return ""


def patient_key(
    identifiers: Iterable[str], sending_facility: str, mrn: str, member_ids: Iterable[str] = ()
) -> str:
    """`MBI|<mbi>` when the order carries an MBI, else `<sending facility>|<MRN>`; empty when
    the order has neither (an order without a patient id has no history)."""
    mbi = mbi_from(identifiers, member_ids)
    if mbi:
        return f"MBI|{mbi}"
    return f"{sending_facility}|{mrn}" if mrn.strip() else ""


def stored_patient_key(details: dict[str, Any], sending_facility: str, mrn: str) -> str:
    """`patient_key` of an order as stored (`Order.details` keeps every PID-3 id and IN1)."""
    return patient_key(
        [str(i) for i in details.get("patient_identifiers") or ()],
        sending_facility,
        mrn,
        [
            str(i.get("member_id") or "")
            for i in details.get("insurances") or ()
            if isinstance(i, dict)
        ],
    )
