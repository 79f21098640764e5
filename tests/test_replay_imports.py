"""What an import changes: after `labintake codes import KIND FILE`, replaying stored orders
pinned to the version it wrote reports each order it would change, with the versions before
and after, for every import kind."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner
from verification_rows import store_order

from labintake.cli import app
from labintake.codes.importing import import_file
from labintake.codes.tables import load_code_tables
from labintake.verification.replay import replay
from labintake.verification.service import verify_pending

REPO = Path(__file__).resolve().parent.parent
SINCE = date(2026, 1, 1)

# One small file per import kind, in its official layout (synthetic rows).
IMPORTS = {
    "ncd": (
        "ncd,list,code,title\n"
        "190.23,hcpcs,80061,Lipid Testing\n"
        "190.23,covered,E78.*,\n"
        "190.23,covered,E08-E13,\n"
    ),
    "ncci-ptp": (
        "Column 1\tColumn 2\t*=In existence prior to 1996\tEffective Date\tDeletion Date\t"
        "Modifier\tPTP Edit Rationale\n"
        "84443\t84439\t\t20200101\t*\t0\tMutually exclusive procedures\n"
    ),
    "mue": (
        '"HCPCS/CPT Code","Practitioner Services MUE Values","MUE Adjudication Indicator",'
        '"MUE Rationale"\n'
        '"80061","0","2 Date of Service Edit: Policy","CMS Policy"\n'
    ),
    "catalog": "code,loinc,cpt,description,specimen\nTSH,3016-3,84443,TSH,serum\n",
}
# kind -> (the order that changes, the finding it gains)
EXPECTED = {
    "ncd": ("lipids_cad", "NECESSITY_NOT_SUPPORTED@OBR[1]-4"),
    "ncci-ptp": ("thyroid", "BUNDLED_COMPONENT@OBR[2]-4"),
    "mue": ("lipids_e78", "UNITS_OVER_LIMIT@OBR[1]-4"),
    "catalog": ("lipids_e78", "TEST_UNKNOWN@OBR[1]-4"),
}
TABLE_KIND = {"ncd": "coverage", "ncci-ptp": "bundling", "mue": "bundling", "catalog": "catalog"}


@pytest.fixture
def tables_dir(tmp_path: Path) -> Path:
    target = tmp_path / "code_tables"
    shutil.copytree(REPO / "code_tables", target)
    return target


@pytest.fixture
def stored(engine: Engine, tables_dir: Path) -> dict[str, int]:
    ids = {
        "lipids_cad": store_order(engine, [("80061", "CPT")], ["I25.10"], mrn="M1"),
        "lipids_e78": store_order(engine, [("80061", "CPT")], ["E78.5"], mrn="M2"),
        "thyroid": store_order(engine, [("84443", "CPT"), ("84439", "CPT")], ["E03.9"], mrn="M3"),
    }
    verify_pending(engine, load_code_tables(tables_dir))
    return ids


@pytest.mark.parametrize("kind", sorted(IMPORTS))
def test_replay_pinned_to_an_imported_version_shows_what_the_import_changes(
    engine: Engine, tables_dir: Path, stored: dict[str, int], tmp_path: Path, kind: str
) -> None:
    source = tmp_path / f"{kind}.txt"
    source.write_text(IMPORTS[kind], encoding="utf-8")
    written = import_file(kind, source, tables_dir, effective_from=date(2026, 12, 1)).written
    assert written is not None
    if kind != "catalog":  # the lab's catalog is not dated: its newest version always applies
        # In force from December: orders of May keep their tables unless the replay is pinned.
        unpinned = replay(engine, load_code_tables(tables_dir), SINCE)
        assert unpinned.changes == []
    pinned = replay(engine, load_code_tables(tables_dir, only_version=written.version), SINCE)
    changes = {c.order_id: c for c in pinned.changes}
    order_key, finding = EXPECTED[kind]
    change = changes[stored[order_key]]
    assert finding in change.added
    assert (change.status_before, change.status_after) == ("verified", "held")
    table_kind = TABLE_KIND[kind]
    assert change.table_versions[table_kind] == written.version
    assert change.versions_before[table_kind] != written.version
    assert f"{table_kind} {change.versions_before[table_kind]}->{written.version}" in (
        change.describe()
    )


def test_replay_command_pinned_to_an_ncd_import_prints_each_change(
    database_url: str, engine: Engine, tables_dir: Path, stored: dict[str, int], tmp_path: Path
) -> None:
    source = tmp_path / "ncd.csv"
    source.write_text(IMPORTS["ncd"], encoding="utf-8")
    runner = CliRunner()
    env = {
        "LABINTAKE_DATABASE_URL": database_url,
        "LABINTAKE_DEVELOPMENT": "1",
        "LABINTAKE_CODE_TABLES_DIR": str(tables_dir),
        "LABINTAKE_INTERFACES_DIR": str(REPO / "interfaces"),
    }
    imported = runner.invoke(
        app,
        ["codes", "import", "ncd", str(source), "--version", "coverage-2026.12",
         "--effective-from", "2026-12-01", "--dir", str(tables_dir)],
        env=env,
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(
        app, ["replay", "--since", "2026-01-01", "--tables", "coverage-2026.12"], env=env
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    changed = [line for line in lines if line.startswith(f"order {stored['lipids_cad']} ")]
    assert len(changed) == 1
    assert "verified -> held" in changed[0]
    assert "+NECESSITY_NOT_SUPPORTED@OBR[1]-4" in changed[0]
    assert "coverage coverage-2026.4->coverage-2026.12" in changed[0]
    assert "pinned to coverage-2026.12" in lines[-1]
    assert "read-only: nothing written" in lines[-1]
