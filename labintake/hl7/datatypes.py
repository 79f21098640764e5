"""HL7 data types read into plain values: DTM/TS, XPN, XCN, XAD, XTN, CE/CWE.

Each reader takes a `Segment` and a field number and returns Python values; a value that is
present but unreadable raises `ValueError` with a sentence fit for a warning or an error.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

from labintake.domain import CodedValue, Provider
from labintake.hl7.segments import Segment

_DTM = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<frac>\d{1,4}))?(?P<tz>[+-]\d{4})?\Z"
)


def parse_dtm(value: str) -> datetime | None:
    """An HL7 DTM (TS component 1) with at least a full date; None when empty.

    A value with a UTC offset gives an aware datetime; without one the result is naive (the
    sender's local time), for the caller to place in the sender's time zone.
    """
    value = value.strip()
    if not value:
        return None
    match = _DTM.match(value)
    if match is None or match["d"] is None:
        raise ValueError(f"{value!r} is not an HL7 date (YYYYMMDD[HHMM[SS]][+/-ZZZZ])")
    try:
        moment = datetime(
            int(match["y"]),
            int(match["mo"]),
            int(match["d"]),
            int(match["h"] or 0),
            int(match["mi"] or 0),
            int(match["s"] or 0),
            int((match["frac"] or "0").ljust(6, "0")),
        )
    except ValueError:
        raise ValueError(f"{value!r} is not an HL7 date (no such day or time)") from None
    tz = match["tz"]
    if tz:
        sign = 1 if tz[0] == "+" else -1
        hours, minutes = int(tz[1:3]), int(tz[3:5])
        if hours > 14 or minutes > 59:
            raise ValueError(f"{value!r} has an impossible UTC offset {tz}")
        offset = timedelta(hours=hours, minutes=minutes) * sign
        moment = moment.replace(tzinfo=UTC if not offset else timezone(offset))
    return moment


def parse_date(value: str) -> date | None:
    moment = parse_dtm(value)
    return None if moment is None else moment.date()


def coded_value(segment: Segment, number: int, rep: int = 1) -> CodedValue:
    """A CE/CWE field: code, text, system and the alternate triplet."""
    return CodedValue(
        code=segment.text(number, 1, rep),
        text=segment.text(number, 2, rep),
        system=segment.text(number, 3, rep),
        alt_code=segment.text(number, 4, rep),
        alt_text=segment.text(number, 5, rep),
        alt_system=segment.text(number, 6, rep),
    )


def person_name(segment: Segment, number: int, rep: int = 1) -> tuple[str, str]:
    """XPN/XCN family and given names: (family, given). XCN names start one component later."""
    return segment.text(number, 1, rep), segment.text(number, 2, rep)


def is_npi_shaped(value: str) -> bool:
    return len(value) == 10 and value.isdigit()


def provider(segment: Segment, number: int) -> Provider | None:
    """The ordering provider from an XCN field (ORC-12, OBR-16); None when the field is empty.

    Of several repetitions, the one that carries an NPI wins. An id is taken as the NPI when
    its assigning authority (XCN-9) or identifier type (XCN-13) says NPI, or when it is ten
    digits (the shape of an NPI; the check digit is the verification's business).
    """
    best: Provider | None = None
    for rep in range(1, segment.repetitions(number) + 1):
        identifier = segment.text(number, 1, rep)
        family = segment.text(number, 2, rep)
        given = segment.text(number, 3, rep)
        if not (identifier or family or given):
            continue
        authority = segment.text(number, 9, rep)
        id_type = segment.text(number, 13, rep)
        says_npi = "NPI" in (authority.upper(), id_type.upper())
        npi = identifier if says_npi or is_npi_shaped(identifier) else ""
        found = Provider(
            npi=npi,
            family_name=family,
            given_name=given,
            id_authority=authority or id_type,
            location=segment.loc(number),
            identifier=identifier,
        )
        if npi:
            return found
        best = best or found
    return best


def address(segment: Segment, number: int, rep: int = 1) -> str:
    """An XAD as one line: "street, other, city, ST zip"."""
    street, other, city, state, zipcode = (segment.text(number, c, rep) for c in range(1, 6))
    place = " ".join(part for part in (state, zipcode) if part)
    return ", ".join(part for part in (street, other, city, place) if part)


def phones(segment: Segment, number: int) -> tuple[str, str]:
    """(phone, fax) from an XTN field; v2.3 text in XTN-1, v2.5 area code/number in XTN-6/7."""
    phone = fax = ""
    for rep in range(1, segment.repetitions(number) + 1):
        text = _phone_text(segment, number, rep)
        if not text:
            continue
        kind = (segment.text(number, 2, rep) + segment.text(number, 3, rep)).upper()
        if "FX" in kind:
            fax = fax or text
        else:
            phone = phone or text
    return phone, fax


def _phone_text(segment: Segment, number: int, rep: int) -> str:
    area, local, extension = (segment.text(number, c, rep) for c in (6, 7, 8))
    if local:
        text = f"({area}) {local}" if area else local
        if len(local) == 7 and local.isdigit():
            text = f"({area}) {local[:3]}-{local[3:]}" if area else f"{local[:3]}-{local[3:]}"
        return f"{text} x{extension}" if extension else text
    return segment.text(number, 1, rep) or segment.text(number, 4, rep)
