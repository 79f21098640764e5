"""Reading a coverage table version (`code_tables/coverage/<version>/`) into `CoveragePolicies`.

Files (all TOML, meant to be edited by people; seal the folder after editing):

- `ncd-<number>.toml` / `lcd-<name>.toml`: one policy each (`ncd`, `title`, `kind`, `cpts`,
  `inverted`, `covered`, `covered_verify` (covered, not yet confirmed against the CMS list),
  `not_covered`, `complete` (false: the lists are known to be partial; `missing` or `notes`
  says what is missing), `[[frequency]]` limits, `source`, `sources`, `read_on`,
  `effective`, `illustrative`, `notes`, and the NCD's frequency statements as data
  (`frequency_statement`: a text, or `[[frequency_statement]]` tables; see docs/coverage.md).
- `screening.toml`: `[[benefit]]` entries, the Medicare screening benefits (see
  `labintake.codes.screening` for the fields).
- `never_covered.toml`: `codes` (confirmed) and `codes_verify` (to confirm against CMS).
- `payers.toml`: the payer table, `[[payer]]` entries (`type`, `name`, `company_ids`,
  `plan_ids`, `names`, `source`); Medicare, Medicare Advantage and Railroad Medicare plans get
  the Medicare rules. An older `[medicare]` section (`company_ids`, `plan_ids`,
  `name_contains`, `name_excludes`) is still read.
- `ncd_codes.csv` (optional, written by `labintake codes import ncd`): `ncd,list,code` rows
  where list is `covered`, `not_covered` or `hcpcs`; an NCD present there takes its lists
  (and, when given, its procedure codes) from the CSV instead of its TOML file.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labintake.codes.policies import (
    PLAN_TYPES,
    PROCEDURE_CODE,
    CodeSet,
    CoveragePolicies,
    FrequencyLimit,
    FrequencyStatement,
    NcdPolicy,
    PayerPlan,
    PayerRules,
)
from labintake.codes.screening import ScreeningBenefit, benefit_from_toml
from labintake.errors import CodeTableError

NCD_CODES_CSV = "ncd_codes.csv"
NCD_CODE_LISTS = ("covered", "not_covered", "hcpcs")


def _strings_kept(value: Any, where: str) -> tuple[str, ...]:
    """A list of free-text strings, kept as written (titles, addresses)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CodeTableError(f"{where}: expected a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CodeTableError(f"{where}: expected a list of strings")
    return tuple(v.strip().upper() for v in value if v.strip())


def _procedure_codes(value: Any, where: str) -> tuple[str, ...]:
    codes = _strings(value, where)
    bad = [c for c in codes if not PROCEDURE_CODE.match(c)]
    if bad:
        raise CodeTableError(f"{where}: not CPT/HCPCS procedure codes: {', '.join(bad)}")
    return codes


def _flag(data: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise CodeTableError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _statement(data: Any, where: str) -> FrequencyStatement:
    if not isinstance(data, Mapping):
        raise CodeTableError(f"{where}: expected a table")
    try:
        text, source = str(data["text"]).strip(), str(data["source"]).strip()
    except KeyError as exc:
        raise CodeTableError(f"{where}: frequency statement missing {exc}") from exc
    if not text or not source:
        raise CodeTableError(f"{where}: a frequency statement needs its text and its source")
    return FrequencyStatement(
        text=text,
        source=source,
        cpts=_procedure_codes(data.get("cpts"), where),
        enforced_by=str(data.get("enforced_by", "")),
        verify=_flag(data, "verify", False, where),
    )


def _statements(data: Mapping[str, Any], where: str) -> tuple[FrequencyStatement, ...]:
    """`frequency_statement`: one text (its source is `frequency_source`, else the policy's), or
    `[[frequency_statement]]` tables each with its own text and source."""
    value = data.get("frequency_statement")
    if value is None:
        return ()
    if isinstance(value, str):
        source = str(data.get("frequency_source") or data.get("source", "")).strip()
        return (_statement({"text": value, "source": source}, f"{where} frequency_statement"),)
    if not isinstance(value, list):
        raise CodeTableError(f"{where}: frequency_statement must be a text or a list of tables")
    return tuple(_statement(f, f"{where} frequency_statement[{i}]") for i, f in enumerate(value))


def _codes(value: Any, where: str) -> CodeSet:
    try:
        return CodeSet.parse(_strings(value, where))
    except ValueError as exc:
        raise CodeTableError(f"{where}: {exc}") from exc


def _frequency(data: Mapping[str, Any], where: str) -> FrequencyLimit:
    try:
        when = data.get("when_dx")
        return FrequencyLimit(
            cpts=_procedure_codes(data["cpts"], where),
            max_count=int(data["max_count"]),
            period_days=int(data.get("period_days", 31 * int(data.get("period_months", 0)))),
            when_dx=_codes(when, where) if when is not None else None,
            description=str(data["description"]),
            verify=bool(data.get("verify", False)),
            min_age=int(data["min_age"]) if "min_age" in data else None,
            sex=str(data["sex"]).upper() if "sex" in data else None,
            period_months=int(data["period_months"]) if "period_months" in data else None,
            exempt_dx=_codes(data["exempt_dx"], where) if "exempt_dx" in data else None,
            counts=_strings(data.get("counts"), where),
            statutory=bool(data.get("statutory", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CodeTableError(f"{where}: frequency limit missing or bad {exc}") from exc


def policy_from_toml(data: Mapping[str, Any], where: str) -> NcdPolicy:
    try:
        complete = _flag(data, "complete", True, where)
        missing = str(data.get("missing", "")).strip()
        if not complete and not missing and not str(data.get("notes", "")).strip():
            raise CodeTableError(
                f"{where}: complete = false needs `missing` (or `notes`) saying what is missing"
            )
        return NcdPolicy(
            ncd=str(data["ncd"]),
            title=str(data["title"]),
            cpts=_procedure_codes(data["cpts"], f"{where} cpts"),
            covered=_codes(data.get("covered"), f"{where} covered").union(
                _codes(data.get("covered_verify"), f"{where} covered_verify")
            ),
            not_covered=_codes(data.get("not_covered"), f"{where} not_covered"),
            inverted=bool(data.get("inverted", False)),
            frequency=tuple(
                _frequency(f, f"{where} frequency[{i}]")
                for i, f in enumerate(data.get("frequency", []))
            ),
            illustrative=bool(data.get("illustrative", True)),
            source=str(data.get("source", "")),
            effective=str(data.get("effective", "")),
            kind=str(data.get("kind", "NCD")).upper(),
            notes=str(data.get("notes", "")),
            complete=complete,
            missing=missing,
            read_on=str(data.get("read_on", "")),
            sources=_strings_kept(data.get("sources"), f"{where} sources"),
            frequency_statements=_statements(data, where),
        )
    except KeyError as exc:
        raise CodeTableError(f"{where}: missing key {exc}") from exc


def read_ncd_codes_csv(text: str, where: str) -> dict[str, dict[str, list[str]]]:
    """`ncd,list,code` rows -> {ncd: {"covered": [...], "not_covered": [...], "hcpcs": [...]}}."""
    lists: dict[str, dict[str, list[str]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        ncd, kind, code = ((row.get(k) or "").strip() for k in ("ncd", "list", "code"))
        if kind not in NCD_CODE_LISTS:
            raise CodeTableError(f"{where}: list {kind!r} is not one of {NCD_CODE_LISTS}")
        entry = lists.setdefault(ncd, {name: [] for name in NCD_CODE_LISTS})
        entry[kind].append(code)
    return lists


def format_ncd_codes_csv(lists: Mapping[str, Mapping[str, list[str]]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ncd", "list", "code"])
    for ncd in sorted(lists):
        for kind in NCD_CODE_LISTS:
            for code in lists[ncd].get(kind, []):
                writer.writerow([ncd, kind, code])
    return out.getvalue()


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CodeTableError(f"{path}: {exc}") from exc


def load_coverage(folder: Path, version: str, files: tuple[str, ...]) -> CoveragePolicies:
    ncds: list[NcdPolicy] = []
    lcds: list[NcdPolicy] = []
    imported: dict[str, dict[str, list[str]]] = {}
    if NCD_CODES_CSV in files:
        imported = read_ncd_codes_csv(
            (folder / NCD_CODES_CSV).read_text(encoding="utf-8"), str(folder / NCD_CODES_CSV)
        )
    for name in files:
        if not (name.startswith(("ncd-", "lcd-")) and name.endswith(".toml")):
            continue
        data = _load_toml(folder / name)
        lists = imported.get(str(data.get("ncd", "")))
        if lists is not None:
            # The imported CMS file is the whole published list for this NCD.
            data = {
                **data,
                "covered": lists["covered"],
                "covered_verify": [],
                "not_covered": lists["not_covered"],
                "complete": True,
                "missing": "",
            }
            if lists["hcpcs"]:
                data["cpts"] = lists["hcpcs"]
        policy = policy_from_toml(data, str(folder / name))
        (lcds if policy.kind == "LCD" else ncds).append(policy)
    for ncd in imported:
        if not any(p.ncd == ncd for p in ncds):
            raise CodeTableError(
                f"{folder}: {NCD_CODES_CSV} lists NCD {ncd} but there is no ncd-{ncd}.toml "
                "giving its title and codes"
            )
    screening: list[ScreeningBenefit] = []
    if "screening.toml" in files:
        for i, raw in enumerate(_load_toml(folder / "screening.toml").get("benefit", [])):
            where = f"{folder / 'screening.toml'} benefit[{i}]"
            try:
                screening.append(benefit_from_toml(raw, where))
            except KeyError as exc:
                raise CodeTableError(f"{where}: missing key {exc}") from exc
            except ValueError as exc:
                raise CodeTableError(str(exc)) from exc
    never = CodeSet()
    if "never_covered.toml" in files:
        data = _load_toml(folder / "never_covered.toml")
        where = str(folder / "never_covered.toml")
        if not _flag(data, "complete", True, where) and not str(data.get("missing", "")).strip():
            raise CodeTableError(
                f"{where}: complete = false needs `missing` (or `notes`) saying what is missing"
            )
        never = _codes(data.get("codes"), where).union(_codes(data.get("codes_verify"), where))
    payers = PayerRules()
    if "payers.toml" in files:
        payers = read_payers(_load_toml(folder / "payers.toml"), str(folder / "payers.toml"))
    return CoveragePolicies(
        version=version,
        never_covered=never,
        screening=tuple(screening),
        ncds=tuple(sorted(ncds, key=lambda p: p.ncd)),
        lcds=tuple(lcds),
        payers=payers,
    )


def read_payers(data: Mapping[str, Any], where: str) -> PayerRules:
    """The payer table of a `payers.toml` (or of an imported payer file)."""
    legacy = data.get("medicare", {})
    plans: list[PayerPlan] = []
    for i, raw in enumerate(data.get("payer", [])):
        at = f"{where} payer[{i}]"
        kind = str(raw.get("type", "")).strip().lower()
        if kind not in PLAN_TYPES:
            raise CodeTableError(f"{at}: type {kind!r} is not one of {sorted(PLAN_TYPES)}")
        ids = frozenset(_strings(raw.get("company_ids"), at))
        names = frozenset(" ".join(n.split()) for n in _strings(raw.get("names"), at))
        plan_ids = frozenset(_strings(raw.get("plan_ids"), at))
        if not ids and not names and not plan_ids:
            raise CodeTableError(f"{at}: give company_ids, plan_ids or names for the payer")
        plans.append(
            PayerPlan(
                type=kind,
                name=str(raw.get("name", "")),
                company_ids=ids,
                plan_ids=plan_ids,
                names=names,
                source=str(raw.get("source", "")),
            )
        )
    return PayerRules(
        company_ids=frozenset(_strings(legacy.get("company_ids"), where)),
        plan_ids=frozenset(_strings(legacy.get("plan_ids"), where)),
        name_contains=_strings(legacy.get("name_contains"), where),
        name_excludes=_strings(legacy.get("name_excludes"), where),
        plans=tuple(plans),
    )
