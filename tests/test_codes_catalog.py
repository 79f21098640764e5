"""The test catalog: shipped compendium, resolution of OBR-4 codes, a lab's own CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from labintake.codes.catalog import (
    CatalogEntry,
    TestCatalog,
    format_catalog_csv,
    loinc_check_digit_ok,
    read_catalog_csv,
)
from labintake.codes.tables import load_code_tables
from labintake.interfaces import load_interface

REPO = Path(__file__).resolve().parent.parent
CMP_COMPONENTS = [
    "82040",
    "82247",
    "82310",
    "82374",
    "82435",
    "82565",
    "82947",
    "84075",
    "84132",
    "84155",
    "84295",
    "84450",
    "84460",
    "84520",
]


@pytest.fixture(scope="module")
def catalog() -> TestCatalog:
    return load_code_tables(REPO / "code_tables").catalog


def test_shipped_catalog_has_at_least_40_tests_with_our_own_descriptions(
    catalog: TestCatalog,
) -> None:
    assert len(catalog) >= 40
    assert all(entry.description and entry.specimen for entry in catalog)


@pytest.mark.parametrize(
    ("local", "loinc", "cpt", "ncd"),
    [
        ("CBCD", "57021-8", "85025", "190.15"),
        ("CBC", "58410-2", "85027", "190.15"),
        ("CMP", "24323-8", "80053", None),
        ("BMP", "24321-2", "80048", None),
        ("HEPFP", "24325-3", "80076", None),
        ("LIPID", "24331-1", "80061", "190.23"),
        ("HBA1C", "4548-4", "83036", "190.21"),
        ("GLU", "2345-7", "82947", "190.20"),
        ("TSH", "3016-3", "84443", "190.22"),
        ("FT4", "3024-7", "84439", "190.22"),
        ("PSA", "2857-1", "84153", "190.31"),
        ("FE", "2498-4", "83540", "190.18"),
        ("FERR", "2276-4", "82728", "190.18"),
        ("PTINR", "5902-2", "85610", "190.17"),
        ("PTT", "14979-9", "85730", "190.16"),
        ("UCULT", "630-4", "87086", "190.12"),
        ("VITD", "62292-8", "82306", None),
        ("B12", "2132-9", "82607", None),
        ("GGT", None, "82977", "190.32"),
        ("HEPP", None, "80074", "190.33"),
    ],
)
def test_catalog_codes_match_the_domain_facts(
    catalog: TestCatalog, local: str, loinc: str | None, cpt: str, ncd: str | None
) -> None:
    entry = catalog.by_code(local)
    assert entry is not None
    assert (entry.loinc, entry.cpt, entry.ncd) == (loinc, cpt, ncd)


def test_panel_components_are_listed(catalog: TestCatalog) -> None:
    cmp_entry = catalog.by_code("CMP")
    lipid = catalog.by_code("LIPID")
    assert cmp_entry is not None
    assert lipid is not None
    assert cmp_entry.components == tuple(CMP_COMPONENTS)
    assert lipid.components == ("82465", "83718", "84478")


def test_psa_is_diagnostic_with_g0103_for_screening(catalog: TestCatalog) -> None:
    psa = catalog.by_code("psa")
    assert psa is not None
    assert psa.diagnostic_only
    assert psa.screening_cpt == "G0103"


def test_every_shipped_loinc_passes_its_check_digit(catalog: TestCatalog) -> None:
    loincs = [e.loinc for e in catalog if e.loinc]
    assert len(loincs) >= 15
    assert all(loinc_check_digit_ok(code) for code in loincs)
    assert not loinc_check_digit_ok("2345-6")


def test_resolve_by_loinc_cpt_and_local_code(catalog: TestCatalog) -> None:
    by_loinc = catalog.resolve("24331-1", "LN")
    by_cpt = catalog.resolve("80061", "C4")
    by_hcpcs = catalog.resolve("G0103", "HCPCS")
    by_local = catalog.resolve("lipid", "L")
    assert by_loinc is not None
    assert by_loinc.code == "LIPID"
    assert by_cpt is not None
    assert by_cpt.code == "LIPID"
    assert by_hcpcs is not None
    assert by_hcpcs.code == "PSASCR"
    assert by_local is not None
    assert by_local.code == "LIPID"
    assert catalog.resolve("99999-9", "LN") is None
    assert catalog.resolve("", "LN") is None


def test_resolve_maps_a_senders_local_codes_through_the_interface(
    catalog: TestCatalog, tmp_path: Path
) -> None:
    folder = tmp_path / "clinic"
    folder.mkdir()
    (folder / "interface.toml").write_text(
        'sending_application = "EHR"\nsending_facility = "CLINIC"\n'
        '[test_codes]\n"LAB1234" = "CBCD"\n"lp-01" = "LIPID"\n',
        encoding="utf-8",
    )
    interface = load_interface(folder)
    cbc = catalog.resolve("LAB1234", "L", interface.test_codes)
    lipid = catalog.resolve("LP-01", "99LOCAL", interface.test_codes)
    assert cbc is not None
    assert cbc.cpt == "85025"
    assert lipid is not None
    assert lipid.cpt == "80061"
    assert catalog.resolve("LAB9999", "L", interface.test_codes) is None


def test_lab_catalog_csv_keeps_good_rows_and_reports_bad_ones_with_line_numbers() -> None:
    text = (
        "code,loinc,cpt,description,specimen,components,ncd,lcd,screening_cpt,diagnostic_only\n"
        "LIP,24331-1,80061,Lipids,serum,82465 83718 84478,190.23,,,\n"
        "BADCPT,,8006,Lipids again,serum,,,,,\n"
        "BADLOINC,24331-2,80061,Wrong check digit,serum,,,,,\n"
        "LIP,,80061,Repeated code,serum,,,,,\n"
        ",,85025,No code,blood,,,,,\n"
        "NODESC,,85025,,blood,,,,,\n"
        "FLAG,,85025,CBC,blood,,,,,maybe\n"
        "PSA2,,84153,PSA,serum,,190.31,,G0103,yes\n"
    )
    result = read_catalog_csv(text)
    assert [e.code for e in result.entries] == ["LIP", "PSA2"]
    assert result.rows_read == 8
    lines = [p.line for p in result.problems]
    assert lines == [3, 4, 5, 6, 7, 8]
    reasons = " | ".join(p.reason for p in result.problems)
    assert "5-character procedure code" in reasons
    assert "check digit" in reasons
    assert "repeated" in reasons
    assert "diagnostic_only" in reasons


def test_catalog_csv_without_required_columns_is_refused() -> None:
    result = read_catalog_csv("code,loinc\nX,1-1\n")
    assert result.entries == []
    assert "cpt" in result.problems[0].reason
    assert "description" in result.problems[0].reason


def test_catalog_round_trips_through_its_csv(catalog: TestCatalog) -> None:
    again = read_catalog_csv(format_catalog_csv(catalog))
    assert again.problems == []
    assert again.entries == list(catalog)


def test_duplicate_local_codes_are_refused_by_the_catalog() -> None:
    entry = CatalogEntry("X", None, "85025", "CBC", "blood")
    with pytest.raises(ValueError, match="twice"):
        TestCatalog("t", [entry, entry])


def test_every_shipped_interface_maps_to_tests_in_the_shipped_catalog(
    catalog: TestCatalog,
) -> None:
    from labintake.interfaces import load_interfaces

    registry = load_interfaces(REPO / "interfaces")
    mapped = {(i.name, sent, local) for i in registry for sent, local in i.test_codes.items()}
    missing = sorted(entry for entry in mapped if catalog.by_code(entry[2]) is None)
    assert missing == []
