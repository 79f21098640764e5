"""Reading a coverage table version (`code_tables/coverage/<version>/`) into `CoveragePolicies`.

Files (all TOML, meant to be edited by people; seal the folder after editing):

- `ncd-<number>.toml` / `lcd-<name>.toml`: one policy each (`ncd`, `title`, `kind`, `cpts`,
  `inverted`, `covered`, `covered_verify` (covered, not yet confirmed against the CMS list),
  `not_covered`, `complete` (false: the lists are known to be partial), `[[frequency]]`
  limits, `source`, `effective`, `illustrative`, `notes`).
- `screening.toml`: `[[rule]]` entries (`dx`, `diagnostic_cpts`, `screening_cpt`,
  `description`, optional `[rule.frequency]`).
- `never_covered.toml`: `codes` (confirmed) and `codes_verify` (to confirm against CMS).
- `payers.toml`: which insurances the Medicare rules apply to.
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
    CodeSet,
    CoveragePolicies,
    FrequencyLimit,
    NcdPolicy,
    PayerRules,
    ScreeningRule,
)
from labintake.errors import CodeTableError

NCD_CODES_CSV = "ncd_codes.csv"
NCD_CODE_LISTS = ("covered", "not_covered", "hcpcs")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CodeTableError(f"{where}: expected a list of strings")
    return tuple(v.strip().upper() for v in value if v.strip())


def _codes(value: Any, where: str) -> CodeSet:
    try:
        return CodeSet.parse(_strings(value, where))
    except ValueError as exc:
        raise CodeTableError(f"{where}: {exc}") from exc


def _frequency(data: Mapping[str, Any], where: str) -> FrequencyLimit:
    try:
        when = data.get("when_dx")
        return FrequencyLimit(
            cpts=_strings(data["cpts"], where),
            max_count=int(data["max_count"]),
            period_days=int(data["period_days"]),
            when_dx=_codes(when, where) if when is not None else None,
            description=str(data["description"]),
            verify=bool(data.get("verify", False)),
            min_age=int(data["min_age"]) if "min_age" in data else None,
            sex=str(data["sex"]).upper() if "sex" in data else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CodeTableError(f"{where}: frequency limit missing or bad {exc}") from exc


def policy_from_toml(data: Mapping[str, Any], where: str) -> NcdPolicy:
    try:
        return NcdPolicy(
            ncd=str(data["ncd"]),
            title=str(data["title"]),
            cpts=_strings(data["cpts"], f"{where} cpts"),
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
            complete=bool(data.get("complete", True)),
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
            data = {
                **data,
                "covered": lists["covered"],
                "covered_verify": [],
                "not_covered": lists["not_covered"],
                "complete": True,  # an official list replaces the transcribed one
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
    screening: list[ScreeningRule] = []
    if "screening.toml" in files:
        for i, rule in enumerate(_load_toml(folder / "screening.toml").get("rule", [])):
            where = f"{folder / 'screening.toml'} rule[{i}]"
            try:
                frequency = rule.get("frequency")
                screening.append(
                    ScreeningRule(
                        dx=_codes(rule["dx"], where),
                        diagnostic_cpts=_strings(rule["diagnostic_cpts"], where),
                        screening_cpt=(str(rule["screening_cpt"]).upper() or None)
                        if rule.get("screening_cpt")
                        else None,
                        description=str(rule["description"]),
                        frequency=_frequency(frequency, where) if frequency else None,
                    )
                )
            except KeyError as exc:
                raise CodeTableError(f"{where}: missing key {exc}") from exc
    never = CodeSet()
    if "never_covered.toml" in files:
        data = _load_toml(folder / "never_covered.toml")
        where = str(folder / "never_covered.toml")
        never = _codes(data.get("codes"), where).union(_codes(data.get("codes_verify"), where))
    payers = PayerRules()
    if "payers.toml" in files:
        data = _load_toml(folder / "payers.toml").get("medicare", {})
        where = str(folder / "payers.toml")
        payers = PayerRules(
            company_ids=frozenset(_strings(data.get("company_ids"), where)),
            plan_ids=frozenset(_strings(data.get("plan_ids"), where)),
            name_contains=_strings(data.get("name_contains", ["MEDICARE"]), where),
            name_excludes=_strings(data.get("name_excludes"), where),
        )
    return CoveragePolicies(
        version=version,
        never_covered=never,
        screening_rules=tuple(screening),
        ncds=tuple(sorted(ncds, key=lambda p: p.ncd)),
        lcds=tuple(lcds),
        payers=payers,
    )
