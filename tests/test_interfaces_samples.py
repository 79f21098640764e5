"""Every sample under interfaces/*/samples goes through intake and reading; its outcome is
checked against the folder's samples.toml (ACK code, message status, reason, orders)."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from labintake.config import Settings
from labintake.errors import ConfigurationError
from labintake.intake import Intake
from labintake.interfaces import load_interfaces
from labintake.models import InboundMessage, Order, OrderDiagnosis, OrderTest
from labintake.reading.worker import read_until_empty

INTERFACES = Path(__file__).resolve().parent.parent / "interfaces"
FOLDERS = sorted(p.parent.name for p in INTERFACES.glob("*/samples.toml"))


def _msa_code(ack: bytes) -> str:
    for segment in ack.decode("latin-1").replace("\n", "\r").split("\r"):
        if segment.startswith("MSA"):
            return segment.split(segment[3])[1]
    return ""


def _run_folder(settings: Settings, engine: Engine, folder: Path) -> list[dict[str, Any]]:
    """Intake then read each sample in file order; return what each produced."""
    samples = tomllib.loads((folder / "samples.toml").read_text(encoding="utf-8"))["sample"]
    registry = load_interfaces(INTERFACES)
    outcomes: list[dict[str, Any]] = []

    async def go() -> None:
        async with Intake(settings, engine, interfaces=registry) as intake:
            for sample in samples:
                ack = await intake.handle((folder / sample["file"]).read_bytes(), "192.0.2.1:1")
                read_until_empty(engine, registry)
                with Session(engine) as session:
                    message = session.execute(
                        select(InboundMessage).order_by(col(InboundMessage.id).desc()).limit(1)
                    ).scalar_one()
                outcomes.append({"got_ack": _msa_code(ack), "message": message})

    asyncio.run(go())
    return [{**sample, **outcome} for sample, outcome in zip(samples, outcomes, strict=True)]


def _orders(engine: Engine, message_id: int) -> list[dict[str, Any]]:
    with Session(engine) as session:
        orders = session.execute(
            select(Order).where(Order.message_id == message_id).order_by(col(Order.group_index))
        ).scalars()
        found = []
        for order in orders:
            tests = session.execute(
                select(OrderTest).where(OrderTest.order_id == order.id).order_by(col(OrderTest.seq))
            ).scalars()
            diagnoses = session.execute(
                select(OrderDiagnosis)
                .where(OrderDiagnosis.order_id == order.id)
                .order_by(col(OrderDiagnosis.seq))
            ).scalars()
            tests = list(tests)
            found.append(
                {
                    "placer": order.placer_order_number,
                    "status": order.status,
                    "npi": order.provider_npi,
                    "warnings": order.details["warnings"],
                    "tests": [t.sent_code for t in tests],
                    "local_codes": [t.local_code for t in tests],
                    "loinc": [t.loinc for t in tests],
                    "cpt": [t.cpt for t in tests],
                    "units": [t.units for t in tests],
                    "diagnoses": [d.code for d in diagnoses],
                }
            )
        return found


@pytest.mark.parametrize("folder", FOLDERS)
def test_interface_samples_produce_their_stated_outcomes(
    settings: Settings, engine: Engine, folder: str
) -> None:
    results = _run_folder(settings, engine, INTERFACES / folder)
    assert results, f"{folder} has no samples"
    for result in results:
        name, message = result["file"], result["message"]
        assert result["got_ack"] == result["ack"], name
        assert message.status == result["status"], (name, message.error)
        if result["status"] == "error":
            assert result["error"] in (message.error or ""), (name, message.error)
        orders = _orders(engine, message.id)
        assert len(orders) == result["orders"], name
        for expected, order in zip(result.get("order", []), orders, strict=True):
            for key, value in expected.items():
                assert order[key] == value, (name, key)
        for warning in result.get("warnings", []):
            assert any(warning in w for o in orders for w in o["warnings"]), (name, warning)


def test_every_interface_folder_documents_itself_and_has_samples() -> None:
    assert len(FOLDERS) >= 3
    for folder in FOLDERS:
        assert (INTERFACES / folder / "README.md").is_file(), folder
        assert (INTERFACES / folder / "interface.toml").is_file(), folder
        samples = tomllib.loads((INTERFACES / folder / "samples.toml").read_text("utf-8"))
        for sample in samples["sample"]:
            assert (INTERFACES / folder / sample["file"]).is_file(), sample["file"]


def test_interface_timezone_must_be_a_known_zone(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "interface.toml").write_text(
        'sending_application = "A"\nsending_facility = "B"\ntimezone = "Mars/Olympus"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match="unknown timezone 'Mars/Olympus'"):
        load_interfaces(tmp_path)
    (folder / "interface.toml").write_text(
        'sending_application = "A"\nsending_facility = "B"\n', encoding="utf-8"
    )
    assert [i.timezone for i in load_interfaces(tmp_path)] == ["UTC"]
