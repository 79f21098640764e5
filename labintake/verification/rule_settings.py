"""Per-sender and per-payer rule settings: turn a rule off or change its severity.

Read from a TOML file (`LABINTAKE_RULES_FILE`); without one every rule runs at its default
severity. Later sections win: defaults < `[rules]` < `[interfaces.NAME.rules]` <
`[payers.KEY.rules]`.

    [rules]                         # every sender and payer
    SIGNATURE_MISSING = "warn"      # hold | warn | info | off
    CODE_TABLES_OUT_OF_DATE = "hold"  # hold orders until the ICD-10-CM release is loaded

    [interfaces.valley-clinic.rules]
    SIGNATURE_MISSING = "off"

    [payers.AETNA]                  # KEY matches IN1-3 company id, else words in IN1-4 name
                                    # (of the first IN1, primary or secondary, it matches)
    medicare_policies = true        # also apply the Medicare NCD/LCD lists to this payer
    [payers.AETNA.rules]
    NECESSITY_FREQUENCY = "warn"

SIGNATURE_MISSING can never be a hold: Medicare does not require a signature on lab orders.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from labintake.errors import ConfigurationError
from labintake.statuses import FindingCode, Severity

if TYPE_CHECKING:
    from labintake.config import Settings

OFF = "off"
SOFT_ONLY = frozenset({FindingCode.SIGNATURE_MISSING})

# The severity each rule raises when nothing is configured. Some rules use a lower severity in
# specific cases (e.g. an NCCI pair that a modifier may bypass); a configured severity replaces
# whatever the rule chose.
DEFAULT_SEVERITY: Mapping[FindingCode, Severity] = MappingProxyType(
    {
        FindingCode.DX_MISSING: Severity.HOLD,
        FindingCode.DX_INVALID: Severity.HOLD,
        FindingCode.DX_NOT_BILLABLE: Severity.HOLD,
        FindingCode.DX_NOT_EFFECTIVE: Severity.HOLD,
        FindingCode.DX_EXCLUDES1: Severity.WARN,
        # PID-8 is the sex recorded at registration, which can differ from the one relevant
        # to care: a conflict is for the coder to look at, not a hold (a lab may raise it).
        FindingCode.DX_SEX_CONFLICT: Severity.WARN,
        FindingCode.DX_AGE_CONFLICT: Severity.HOLD,
        FindingCode.DX_EXTERNAL_CAUSE_ONLY: Severity.HOLD,
        FindingCode.DX_MANIFESTATION_ALONE: Severity.HOLD,
        FindingCode.DX_UNSPECIFIED_WITH_SPECIFIC: Severity.WARN,
        FindingCode.NECESSITY_NOT_SUPPORTED: Severity.HOLD,
        FindingCode.NECESSITY_FREQUENCY: Severity.HOLD,
        FindingCode.NECESSITY_UNVERIFIED: Severity.WARN,
        FindingCode.SCREENING_ON_DIAGNOSTIC: Severity.HOLD,
        FindingCode.TEST_UNKNOWN: Severity.HOLD,
        FindingCode.TEST_CODE_MISMATCH: Severity.HOLD,
        FindingCode.BUNDLED_COMPONENT: Severity.HOLD,
        FindingCode.TEST_MEDICARE_PARTS: Severity.WARN,
        FindingCode.UNITS_OVER_LIMIT: Severity.HOLD,
        FindingCode.PROVIDER_MISSING: Severity.HOLD,
        FindingCode.PROVIDER_NPI_INVALID: Severity.HOLD,
        FindingCode.DUPLICATE_ORDER: Severity.HOLD,
        FindingCode.SIGNATURE_MISSING: Severity.INFO,
        # A lab may make it a hold: `CODE_TABLES_OUT_OF_DATE = "hold"` under [rules].
        FindingCode.CODE_TABLES_OUT_OF_DATE: Severity.WARN,
    }
)

# A rule's configured outcome: a severity, or None for "off".
Choice = Severity | None


@dataclass(frozen=True, slots=True)
class PayerSettings:
    key: str  # upper case; matched against IN1-3, else contained in IN1-4
    rules: Mapping[FindingCode, Choice] = field(default_factory=dict)
    medicare_policies: bool | None = None  # None: decided by the coverage tables' payer list

    def matches(self, company_id: str, company_name: str) -> bool:
        company = company_id.split("^", 1)[0].strip().upper()
        return company == self.key or (bool(self.key) and self.key in company_name.upper())


@dataclass(frozen=True, slots=True)
class EffectiveRules:
    """The settings for one (sender, payer): a choice per code that has one configured."""

    choices: Mapping[FindingCode, Choice]
    medicare_policies: bool | None

    def apply(self, code: FindingCode, severity: Severity) -> Choice:
        return self.choices.get(code, severity) if self.choices else severity


class RuleSettings:
    def __init__(
        self,
        rules: Mapping[FindingCode, Choice] | None = None,
        interfaces: Mapping[str, Mapping[FindingCode, Choice]] | None = None,
        payers: tuple[PayerSettings, ...] = (),
    ) -> None:
        self.rules = dict(rules or {})
        self.interfaces = {k: dict(v) for k, v in (interfaces or {}).items()}
        self.payers = payers
        for choices in (self.rules, *self.interfaces.values(), *(p.rules for p in payers)):
            _check_choices(choices)
        self._cache: dict[tuple[str, str, str], EffectiveRules] = {}

    def for_order(self, interface: str, company_id: str, company_name: str) -> EffectiveRules:
        key = (interface, company_id, company_name)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        choices: dict[FindingCode, Choice] = dict(self.rules)
        choices.update(self.interfaces.get(interface, {}))
        medicare: bool | None = None
        for payer in self.payers:
            if payer.matches(company_id, company_name):
                choices.update(payer.rules)
                if payer.medicare_policies is not None:
                    medicare = payer.medicare_policies
                break
        effective = EffectiveRules(MappingProxyType(choices), medicare)
        if len(self._cache) < 4096:
            self._cache[key] = effective
        return effective

    def for_payers(
        self, interface: str, payers: list[tuple[str, str]] | tuple[tuple[str, str], ...]
    ) -> EffectiveRules:
        """The settings for an order with these insurances (company id, name), primary first:
        those of the first insurance a `[payers.KEY]` section matches, else the primary's."""
        for company_id, company_name in payers:
            if any(p.matches(company_id, company_name) for p in self.payers):
                return self.for_order(interface, company_id, company_name)
        primary = payers[0] if payers else ("", "")
        return self.for_order(interface, *primary)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "rules") -> RuleSettings:
        unknown = set(data) - {"rules", "interfaces", "payers"}
        if unknown:
            raise ConfigurationError(f"{source}: unknown section(s) {sorted(unknown)}")
        rules = _parse_choices(data.get("rules", {}), f"{source} [rules]")
        interfaces: dict[str, dict[FindingCode, Choice]] = {}
        for name, section in _table(data.get("interfaces", {}), f"{source} [interfaces]").items():
            body = _table(section, f"{source} [interfaces.{name}]")
            interfaces[name] = _parse_choices(
                body.get("rules", {}), f"{source} [interfaces.{name}.rules]"
            )
        payers: list[PayerSettings] = []
        for key, section in _table(data.get("payers", {}), f"{source} [payers]").items():
            body = _table(section, f"{source} [payers.{key}]")
            medicare = body.get("medicare_policies")
            if medicare is not None and not isinstance(medicare, bool):
                raise ConfigurationError(
                    f"{source} [payers.{key}]: medicare_policies must be true or false"
                )
            payers.append(
                PayerSettings(
                    key=key.strip().upper(),
                    rules=_parse_choices(body.get("rules", {}), f"{source} [payers.{key}.rules]"),
                    medicare_policies=medicare,
                )
            )
        return cls(rules, interfaces, tuple(payers))

    @classmethod
    def from_toml(cls, path: Path) -> RuleSettings:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"{path}: {exc}") from exc
        return cls.from_mapping(data, str(path))


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}: expected a table")
    return value


def _parse_choices(value: Any, where: str) -> dict[FindingCode, Choice]:
    choices: dict[FindingCode, Choice] = {}
    for name, raw in _table(value, where).items():
        try:
            code = FindingCode(name.strip().upper())
        except ValueError as exc:
            raise ConfigurationError(f"{where}: {name!r} is not a finding code") from exc
        text = str(raw).strip().lower()
        if text == OFF or raw is False:
            choices[code] = None
            continue
        try:
            choices[code] = Severity(text)
        except ValueError as exc:
            raise ConfigurationError(
                f"{where}: {name} = {raw!r}; use hold, warn, info or off"
            ) from exc
    _check_choices(choices, where)
    return choices


def _check_choices(choices: Mapping[FindingCode, Choice], where: str = "rules") -> None:
    for code, choice in choices.items():
        if code in SOFT_ONLY and choice is Severity.HOLD:
            raise ConfigurationError(
                f"{where}: {code} can only be warn, info or off (never a hold)"
            )


DEFAULT_RULES = RuleSettings()


def load_rule_settings(path: Path | None) -> RuleSettings:
    """The settings in `path`, or the defaults when no file is configured."""
    return DEFAULT_RULES if path is None else RuleSettings.from_toml(path)


_loaded: dict[tuple[Path, float], RuleSettings] = {}


def rules_for(settings: Settings) -> RuleSettings:
    """The rule settings of `settings.rules_file`, read once per file version (mtime)."""
    path = settings.rules_file
    if path is None:
        return DEFAULT_RULES
    try:
        key = (path.resolve(), path.stat().st_mtime)
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    found = _loaded.get(key)
    if found is None:
        found = _loaded[key] = RuleSettings.from_toml(path)
    return found
