"""Liability modifiers and the advice a coder gets about them.

Two different situations (Medicare Claims Processing Manual, Pub. 100-04, chapter 30, section
50 and section 90; chapter 1, section 60.4.1):

- a test Medicare is expected to deny as not reasonable and necessary (the diagnoses do not
  support it under an NCD/LCD, or it is more frequent than the policy allows): the patient may
  sign an Advance Beneficiary Notice (CMS-R-131) before the test; with it the test carries
  GA, without it GZ;
- a service Medicare excludes by statute (a routine screening outside its benefit: wrong age or
  sex, a test that is not the screening test, a general examination): no ABN is required; the
  test carries GY, and GX as well when the patient signed a voluntary ABN.

This advice goes to the coder in the finding's message only; a query to the ordering office
asks for documentation and never mentions notices, modifiers or payment.
"""

from __future__ import annotations

from labintake.verification.facts import TestFacts

NECESSITY_MODIFIERS = ("GA", "GZ")
EXCLUSION_MODIFIERS = ("GX", "GY")
# Every liability modifier, in the order a coder is offered them when releasing over a hold.
ABN_MODIFIERS = NECESSITY_MODIFIERS + EXCLUSION_MODIFIERS

ABN_ADVICE = (
    " If the record documents no other reason, ask whether the patient signed an Advance "
    "Beneficiary Notice (CMS-R-131) for this test: signed, the test goes with modifier GA; "
    "not signed, with GZ."
)
EXCLUSION_ADVICE = (
    " A service Medicare excludes by statute (a routine examination, a screening outside its "
    "benefit) needs no ABN: the test goes with modifier GY (and GX as well if the patient "
    "signed a voluntary ABN)."
)


def decided(test: TestFacts, modifiers: tuple[str, ...]) -> str | None:
    """The first of `modifiers` the test already carries (the decision is made)."""
    return next((m for m in test.modifiers if m in modifiers), None)


def wrong_kind(test: TestFacts, modifiers: tuple[str, ...]) -> str | None:
    """A liability modifier of the other kind (GY on a necessity denial, GA on an exclusion)."""
    others = [m for m in ABN_MODIFIERS if m not in modifiers]
    return next((m for m in test.modifiers if m in others), None)


def advice(test: TestFacts, *, exclusion: bool) -> tuple[str, bool]:
    """The sentence for the coder's message, and whether the decision is already made."""
    fitting = EXCLUSION_MODIFIERS if exclusion else NECESSITY_MODIFIERS
    made = decided(test, fitting)
    if made:
        return f" The test already carries modifier {made}: the decision is made.", True
    text = EXCLUSION_ADVICE if exclusion else ABN_ADVICE
    other = wrong_kind(test, fitting)
    if other:
        kind = "a statutory exclusion" if other in EXCLUSION_MODIFIERS else "a necessity denial"
        text += f" The test carries {other}, which answers {kind}, not this."
    return text, False
