"""Order verification: rules over code tables (pure), the database service, and replay.

from labintake.verification import verify, OrderFacts
result = verify(facts, tables, history, rules)   # -> VerificationResult
"""

from labintake.verification.engine import RULES_VERSION, verify
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
]
