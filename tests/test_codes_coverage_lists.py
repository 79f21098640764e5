"""Lab NCD lists 190.12-190.22 and the all-NCD never-covered list: pattern matching, the checks
the loader makes on every pattern and code, and the honesty of the shipped data (every list
says whether it is complete, where it was read, and names only codes of the ICD-10-CM table).
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest

from labintake.codes.coverage import load_coverage
from labintake.codes.icd10 import Icd10Release
from labintake.codes.policies import CodeSet, CoveragePolicies
from labintake.codes.tables import load_code_tables
from labintake.errors import CodeTableError
from labintake.statuses import FindingCode
from labintake.verification import verify
from tests.verification_support import order

REPO = Path(__file__).resolve().parent.parent
COVERAGE = REPO / "code_tables" / "coverage" / "coverage-2026.4"
OWN_NCDS = tuple(f"190.{n}" for n in range(12, 23))
DOS = date(2026, 5, 1)


@pytest.fixture(scope="module")
def policies() -> CoveragePolicies:
    return load_code_tables(REPO / "code_tables").policies_for(DOS)


@pytest.fixture(scope="module")
def icd10() -> Icd10Release:
    release = load_code_tables(REPO / "code_tables").icd10_for(DOS)
    assert release is not None
    return release


# --- matching ------------------------------------------------------------------------------


def test_a_range_across_categories_covers_every_code_of_the_categories_between() -> None:
    diabetes = CodeSet.parse(["E08.00-E13.9"])
    for inside in ("E08.00", "E09.65", "E10.10", "E11.65", "E11.3211", "E13.10", "E13.9"):
        assert diabetes.matches(inside), inside
    for outside in ("E07.9", "E08.0", "E14", "E15", "E16.2", "O24.410"):
        assert not diabetes.matches(outside), outside


def test_codes_with_a_letter_after_the_dot_sort_after_the_digits() -> None:
    # E11.A (in remission) and E10.A1 (presymptomatic) follow E11.9 and E10.9 in the table.
    assert CodeSet.parse(["E08.00-E13.9"]).matches("E11.A")
    assert CodeSet.parse(["E10.*"]).matches("E10.A1")
    assert not CodeSet.parse(["E11.00-E11.9"]).matches("E11.A")
    assert CodeSet.parse(["E11.00-E11.A"]).matches("E11.A")


def test_the_out_of_place_categories_need_naming_in_a_range() -> None:
    # D3A sorts after D39 (ASCII), not between D36 and D37 as the printed tabular list has it.
    assert not CodeSet.parse(["D36-D37"]).matches("D3A.01")
    assert CodeSet.parse(["D37.01-D3A.8"]).matches("D3A.01")


@pytest.mark.parametrize(
    "pattern",
    [
        "E11**",  # two wildcards
        "E11..*",  # two dots
        "E11.-*",
        "E1*",  # no category
        "E11.",  # dot and nothing after
        "E11.12345",  # too long
        "1E1.9",  # starts with a digit
        "E1 1.9",  # space inside
        "E08.*-E13",  # wildcard inside a range
        "E08-E10-E13",  # three bounds
        "E11.9 E11.65",  # two codes in one string
        "diabetes",
    ],
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="not an ICD-10-CM code"):
        CodeSet.parse([pattern])


@pytest.mark.parametrize("pattern", ["E11.*", "E11*", "E11.-", "E11-", "e11.*", " E11.* "])
def test_the_written_wildcards_all_stand_for_the_category(pattern: str) -> None:
    codes = CodeSet.parse([pattern])
    assert codes.matches("E11.A")
    assert codes.matches("E11.65")
    assert not codes.matches("E10.9")


# --- the loader ----------------------------------------------------------------------------

POLICY = """
ncd = "190.99"
title = "Test policy"
cpts = ["83036"]
covered = ["E11.*"]
"""


def _load(tmp_path: Path, text: str, name: str = "ncd-190.99.toml") -> CoveragePolicies:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return load_coverage(tmp_path, "test", (name,))


def test_a_malformed_pattern_fails_the_load_naming_the_file_and_the_pattern(
    tmp_path: Path,
) -> None:
    with pytest.raises(CodeTableError, match=r"ncd-190\.99\.toml covered: 'E11\.\.9'"):
        _load(tmp_path, POLICY.replace('"E11.*"', '"E11.*", "E11..9"'))


def test_a_malformed_procedure_code_fails_the_load(tmp_path: Path) -> None:
    with pytest.raises(CodeTableError, match="not CPT/HCPCS procedure codes: 8303"):
        _load(tmp_path, POLICY.replace('"83036"', '"8303"'))


def test_an_incomplete_list_must_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CodeTableError, match="needs `missing`"):
        _load(tmp_path, POLICY + "complete = false\n")
    policy = _load(tmp_path, POLICY + 'complete = false\nmissing = "the rest"\n').ncds[0]
    assert not policy.complete
    assert policy.missing == "the rest"


def test_flags_must_be_booleans(tmp_path: Path) -> None:
    with pytest.raises(CodeTableError, match="complete must be true or false"):
        _load(tmp_path, POLICY + 'complete = "no"\nmissing = "x"\n')


def test_frequency_statements_are_read_with_their_source(tmp_path: Path) -> None:
    text = POLICY + (
        "[[frequency_statement]]\n"
        'cpts = ["83036"]\ntext = "every 3 months"\nsource = "NCD 190.99"\nverify = true\n'
    )
    statement = _load(tmp_path, text).ncds[0].frequency_statements[0]
    assert (statement.text, statement.source, statement.cpts, statement.verify) == (
        "every 3 months",
        "NCD 190.99",
        ("83036",),
        True,
    )
    with pytest.raises(CodeTableError, match="needs its text and its source"):
        _load(tmp_path, POLICY + '[[frequency_statement]]\ntext = "monthly"\nsource = ""\n')


def test_a_frequency_statement_may_be_one_text_with_its_source(tmp_path: Path) -> None:
    text = POLICY + 'frequency_statement = "once a year"\nfrequency_source = "NCD 190.99 text"\n'
    statement = _load(tmp_path, text).ncds[0].frequency_statements[0]
    assert (statement.text, statement.source) == ("once a year", "NCD 190.99 text")
    with pytest.raises(CodeTableError, match="a text or a list of tables"):
        _load(tmp_path, POLICY + "frequency_statement = 3\n")


def test_a_malformed_never_covered_pattern_fails_the_load(tmp_path: Path) -> None:
    with pytest.raises(CodeTableError, match=r"never_covered\.toml: 'Z00,00'"):
        _load(tmp_path, 'codes = ["R99", "Z00,00"]\n', "never_covered.toml")


def test_an_incomplete_never_covered_list_must_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CodeTableError, match="needs `missing`"):
        _load(tmp_path, 'complete = false\ncodes = ["R99"]\n', "never_covered.toml")
    loaded = _load(
        tmp_path, 'complete = false\nmissing = "Z02.5-"\ncodes = ["R99"]\n', "never_covered.toml"
    )
    assert loaded.never_covered.matches("R99")


def test_the_screening_rules_procedure_codes_are_checked(tmp_path: Path) -> None:
    rule = '[[benefit]]\nname = "diabetes"\ndx = ["Z13.1"]\nscreening_cpts = ["8294"]\n'
    with pytest.raises(CodeTableError, match="not CPT/HCPCS"):
        _load(tmp_path, rule, "screening.toml")


# --- the shipped data ----------------------------------------------------------------------


def _own_files() -> list[Path]:
    return [COVERAGE / f"ncd-{n}.toml" for n in OWN_NCDS] + [COVERAGE / "never_covered.toml"]


def test_every_ncd_from_190_12_to_190_22_has_a_policy_file(policies: CoveragePolicies) -> None:
    assert [p.ncd for p in policies.ncds if p.ncd in OWN_NCDS] == list(OWN_NCDS)


@pytest.mark.parametrize("path", _own_files(), ids=lambda p: p.name)
def test_each_list_says_whether_it_is_complete_where_and_when_it_was_read(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data.get("complete"), bool)
    if not data["complete"]:
        assert len(str(data.get("missing", ""))) > 20, "say what is missing"
    assert str(data.get("read_on", "")).startswith("20")
    assert str(data.get("source", "")).strip()
    if path.name.startswith("ncd-"):
        assert data.get("sources"), "the addresses the lists were read at"
        assert data["complete"] or data.get("illustrative") is True


@pytest.mark.parametrize("path", _own_files(), ids=lambda p: p.name)
def test_every_pattern_names_codes_of_the_icd10cm_table(path: Path, icd10: Icd10Release) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    patterns = [
        *data.get("covered", []),
        *data.get("not_covered", []),
        *data.get("codes", []),
        *data.get("codes_verify", []),
    ]
    unknown: list[str] = []
    for pattern in patterns:
        for code in pattern.replace(".*", "").rstrip("*").split("-"):
            if code not in icd10:
                unknown.append(f"{pattern} ({code})")
    assert not unknown, f"{path.name}: not in the ICD-10-CM table: {unknown}"


def test_the_never_covered_list_holds_the_published_codes(policies: CoveragePolicies) -> None:
    never = policies.never_covered
    published = [
        "R99",
        "Z00.00",
        "Z00.01",
        "Z00.110",
        "Z00.111",
        "Z00.121",
        "Z00.129",
        "Z00.5",
        "Z00.70",
        "Z00.71",
        "Z00.8",
        "Z02.0",
        "Z02.1",
        "Z02.2",
        "Z02.3",
        "Z02.4",
    ]
    for code in published:
        assert never.matches(code), code
    for code in ("Z02.6", "Z02.71", "Z02.83", "Z02.9"):  # codes_verify, applied as well
        assert never.matches(code), code
    for code in ("Z00.2", "Z00.3", "Z00.6", "Z01.812", "Z13.1", "Z79.4", "R50.9"):
        assert not never.matches(code), code


def test_blood_counts_are_supported_by_any_code_off_the_never_covered_list(
    policies: CoveragePolicies,
) -> None:
    counts = policies.ncd("190.15")
    assert counts is not None
    assert counts.inverted
    assert not counts.complete
    assert "85025" in counts.cpts
    assert "85027" in counts.cpts
    for code in ("D64.9", "R50.9", "Z79.01", "C50.911", "Z00.6"):
        assert counts.supports(code), code


def test_ncds_without_any_list_read_are_incomplete_and_empty(policies: CoveragePolicies) -> None:
    for number, cpt in (("190.12", "87086"), ("190.13", "87536"), ("190.19", "82523")):
        policy = policies.ncd(number)
        assert policy is not None
        assert not policy.complete
        assert not policy.covered
        assert policies.for_cpt(cpt) == [policy]
    hiv = policies.ncd("190.14")
    assert hiv is not None
    assert not hiv.complete
    assert "86703" in hiv.cpts


def test_each_ncd_is_applied_to_its_procedure_codes(policies: CoveragePolicies) -> None:
    applied = {
        cpt: [p.ncd for p in policies.for_cpt(cpt)]
        for cpt in ("85025", "85730", "85610", "83540", "82947", "83036", "84443")
    }
    assert applied == {
        "85025": ["190.15"],
        "85730": ["190.16"],
        "85610": ["190.17"],
        "83540": ["190.18"],
        "82947": ["190.20"],
        "83036": ["190.21"],
        "84443": ["190.22"],
    }


def test_the_hba1c_list_covers_every_diabetes_family_and_pregnancy(
    policies: CoveragePolicies,
) -> None:
    hba1c = policies.ncd("190.21")
    assert hba1c is not None
    for code in ("E08.65", "E09.9", "E10.9", "E10.A1", "E11.65", "E11.A", "E13.9", "O24.410"):
        assert hba1c.supports(code), code
    for code in ("E66.9", "Z13.1", "I10", "Z83.3"):
        assert not hba1c.supports(code), code


def test_frequency_statements_are_recorded_with_their_sources(
    policies: CoveragePolicies,
) -> None:
    statements = {
        n: p.frequency_statements for n in ("190.20", "190.21", "190.22") if (p := policies.ncd(n))
    }
    assert len(statements["190.21"]) == 3
    assert any("pregnant" in s.text for s in statements["190.21"])
    assert all(s.source.startswith("NCD 190.") for ss in statements.values() for s in ss)
    limits = {limit.description for n in statements for limit in policies.ncd(n).frequency}  # type: ignore[union-attr]
    enforced = {s.enforced_by for ss in statements.values() for s in ss if s.enforced_by}
    assert enforced <= limits, "enforced_by names a frequency limit of the same policy"


def test_findings_say_what_the_shipped_lists_are() -> None:
    tables = load_code_tables(REPO / "code_tables")
    culture = verify(order(["UCULT"], ["Z00.00"], dos=DOS), tables).findings
    assert [f.code for f in culture] == [FindingCode.NECESSITY_NOT_SUPPORTED]
    assert "(partial list shipped with labintake)" in culture[0].message
    assert culture[0].reference["complete"] is False
    unknown = verify(order(["UCULT"], ["N39.0"], dos=DOS), tables).findings
    assert [f.code for f in unknown] == [FindingCode.NECESSITY_UNVERIFIED]
    assert "incomplete" in unknown[0].message
    assert not verify(order(["HBA1C"], ["E11.9"], dos=DOS), tables).findings
