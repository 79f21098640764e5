"""Rule settings: per-sender and per-payer on/off and severity, read from TOML."""

from __future__ import annotations

from pathlib import Path

import pytest
from verification_support import COMMERCIAL, TABLES, order

from labintake.errors import ConfigurationError
from labintake.statuses import FindingCode, OrderStatus, Severity
from labintake.verification import RuleSettings, verify
from labintake.verification.rule_settings import load_rule_settings

RULES = """
[rules]
DX_EXCLUDES1 = "info"

[interfaces.valley-clinic.rules]
SIGNATURE_MISSING = "off"
DX_EXCLUDES1 = "hold"

[payers.ACME]
medicare_policies = true
[payers.ACME.rules]
NECESSITY_NOT_SUPPORTED = "warn"
"""


@pytest.fixture
def rules(tmp_path: Path) -> RuleSettings:
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    return load_rule_settings(path)


def test_global_setting_changes_a_severity(rules: RuleSettings) -> None:
    result = verify(order(["A1C"], ["E10.9", "E11.9"]), TABLES, rules=rules)
    assert [(f.code, f.severity) for f in result.findings] == [
        (FindingCode.DX_EXCLUDES1, Severity.INFO)
    ]


def test_sender_setting_overrides_the_global_one_and_turns_rules_off(rules: RuleSettings) -> None:
    facts = order(["A1C"], ["E10.9", "E11.9"], signature=False, interface="valley-clinic")
    result = verify(facts, TABLES, rules=rules)
    assert [(f.code, f.severity) for f in result.findings] == [
        (FindingCode.DX_EXCLUDES1, Severity.HOLD)
    ]
    assert result.status is OrderStatus.HELD


def test_payer_setting_applies_medicare_policies_to_another_payer(rules: RuleSettings) -> None:
    assert verify(order(["LIPID"], ["D64.9"], payer=COMMERCIAL), TABLES).findings == ()
    result = verify(order(["LIPID"], ["D64.9"], payer=COMMERCIAL), TABLES, rules=rules)
    assert [(f.code, f.severity) for f in result.findings] == [
        (FindingCode.NECESSITY_NOT_SUPPORTED, Severity.WARN)
    ]


def test_signature_rule_can_never_become_a_hold() -> None:
    with pytest.raises(ConfigurationError, match="never a hold"):
        RuleSettings.from_mapping({"rules": {"SIGNATURE_MISSING": "hold"}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": {"NOT_A_CODE": "warn"}}, "not a finding code"),
        ({"rules": {"DX_MISSING": "loud"}}, "use hold, warn, info or off"),
        ({"sections": {}}, "unknown section"),
        ({"payers": {"X": {"medicare_policies": "yes"}}}, "true or false"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RuleSettings.from_mapping(data)


def test_no_settings_file_means_default_severities() -> None:
    assert load_rule_settings(None).for_order("", "", "").choices == {}


def test_a_payer_section_matches_a_secondary_insurance_too() -> None:
    from labintake.statuses import FindingCode, Severity
    from labintake.verification.rule_settings import RuleSettings

    settings = RuleSettings.from_mapping(
        {"payers": {"CMS": {"rules": {"NECESSITY_FREQUENCY": "warn"}}}}
    )
    both = settings.for_payers("", [("BCBS01", "Blue Cross"), ("CMS", "Medicare Part B")])
    assert both.apply(FindingCode.NECESSITY_FREQUENCY, Severity.HOLD) is Severity.WARN
    alone = settings.for_payers("", [("BCBS01", "Blue Cross")])
    assert alone.apply(FindingCode.NECESSITY_FREQUENCY, Severity.HOLD) is Severity.HOLD
    assert settings.for_payers("", []).medicare_policies is None
