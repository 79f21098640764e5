"""Ordering provider rules: provider present with an NPI, the NPI's check digit, signature.

An NPI is 10 digits; its last digit is a Luhn check digit computed over the prefix 80840
followed by the first nine digits. No ABN fixes a missing or invalid ordering provider.
A missing signature is only ever a soft finding: Medicare does not require the ordering
provider's signature on a lab requisition when the order is documented in the record.
"""

from __future__ import annotations

from labintake.statuses import FindingCode
from labintake.verification.context import RuleContext

NPI_PREFIX = (8, 0, 8, 4, 0)


def npi_check_digit(first_nine: str) -> int:
    """The Luhn check digit of an NPI's first nine digits (with the 80840 prefix)."""
    digits = [*NPI_PREFIX, *(int(c) for c in first_nine)]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:  # the rightmost payload digit is doubled
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def npi_problem(npi: str) -> str | None:
    """Why `npi` is not a valid NPI, or None when it is."""
    if len(npi) != 10 or not npi.isdigit():
        return f"{npi!r} is not 10 digits"
    if npi[0] not in "12":
        return f"{npi} does not start with 1 or 2"
    if npi_check_digit(npi[:9]) != int(npi[9]):
        return f"{npi} fails its check digit"
    return None


def check_provider(ctx: RuleContext) -> None:
    facts = ctx.facts
    where = facts.provider_location or "ORC-12"
    npi = facts.provider_npi.strip()
    name = facts.provider_name.strip()
    identifier = facts.provider_identifier.strip()
    if not npi and identifier.isdigit() and len(identifier) == 10:
        npi = identifier  # an NPI sent without its assigning authority
    if not npi:
        if name:
            other = f" (identifier sent: {identifier})" if identifier else ""
            message = f"The ordering provider {name} is sent without an NPI{other}."
        else:
            message = "No ordering provider is sent (ORC-12 and OBR-16 are empty)."
        ctx.add(
            FindingCode.PROVIDER_MISSING,
            where,
            message + " Every lab order needs an identified ordering provider; an ABN does "
            "not fix this.",
            "The order does not identify the ordering provider by NPI"
            + (f" (name given: {name})" if name else "")
            + ". Please provide the ordering provider's name and NPI.",
            subject="npi" if name else "provider",
        )
    else:
        problem = npi_problem(npi)
        if problem is not None:
            who = f" of {name}" if name else ""
            ctx.add(
                FindingCode.PROVIDER_NPI_INVALID,
                where,
                f"The ordering provider's NPI{who}: {problem}.",
                f"The ordering provider's NPI was sent as {npi}, which is not a valid NPI. "
                "Please confirm the ordering provider's NPI.",
                subject=npi,
                reference={"npi": npi},
            )
    if facts.signature_on_file is False:
        ctx.add(
            FindingCode.SIGNATURE_MISSING,
            where,
            "The sender marks the order as not signed by the ordering provider. Medicare does "
            "not require a signature on a lab order documented in the record; noted only.",
            "Please confirm that this order is documented in the patient's record.",
            subject="signature",
        )
