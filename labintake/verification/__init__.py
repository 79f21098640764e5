"""Order verification: rules over code tables (pure), the database service, and replay.

from labintake.verification import verify, OrderFacts
result = verify(facts, tables, history, rules)   # -> VerificationResult
results = verify_message([facts_1, facts_2], tables, history, rules)   # one per order group
"""

from labintake.verification.engine import RULES_VERSION, verify, verify_message
from labintake.verification.facts import (
    NO_HISTORY,
    DiagnosisFacts,
    OrderFacts,
    PatientHistory,
    PayerFacts,
    PriorTest,
    TestFacts,
    facts_from_request,
)
from labintake.verification.findings import Finding, ResolvedTest, VerificationResult
from labintake.verification.rule_settings import RuleSettings, load_rule_settings, rules_for

__all__ = [
    "NO_HISTORY",
    "RULES_VERSION",
    "DiagnosisFacts",
    "Finding",
    "OrderFacts",
    "PatientHistory",
    "PayerFacts",
    "PriorTest",
    "ResolvedTest",
    "RuleSettings",
    "TestFacts",
    "VerificationResult",
    "facts_from_request",
    "load_rule_settings",
    "rules_for",
    "verify",
    "verify_message",
]
