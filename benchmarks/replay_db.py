"""A realistic database for `labintake replay`: the expected-findings corpus and the interface
samples, sent through the real intake function, reading and verification.

Each corpus case (tests/verification_cases/*.toml) becomes one HL7 v2.5.1 ORM^O01 from its
sender (MSH-3/MSH-4 of `interfaces/<sender>/`), with its patient, payer (IN1), diagnoses
(DG1), tests (OBR-4 in the sender's code system), units (OBR-27) and date of service (OBR-7);
a case's `history` rows become earlier orders of the same patient. Every patient is invented.

    python -m benchmarks.replay_db var/replay.sqlite3
    LABINTAKE_DATABASE_URL=sqlite:///var/replay.sqlite3 labintake replay --since 2024-01-01

Run it with one version of the code, then `labintake replay` with another: replay lists, per
order, the status change and the findings each rule change adds or removes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tomllib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from labintake.codes.tables import load_code_tables
from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.intake import Intake
from labintake.interfaces import Interface, load_interfaces
from labintake.reading.worker import read_pending
from labintake.verification.service import verify_pending

REPO = Path(__file__).resolve().parent.parent
CASES_DIR = REPO / "tests" / "verification_cases"
# IN1-2 plan, IN1-3 company id, IN1-4 company name of each insurance, primary first: as the
# corpus names its payers (tests/test_verification_cases.py).
_MEDICARE = ("MCRB", "CMS", "Medicare Part B")
_BCBS = ("PPO", "BCBS01", "Blue Cross Blue Shield of Illinois")
PAYERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "medicare": (_MEDICARE,),
    "medicare-advantage": (("HMOMA", "MAPLAN", "Humana Medicare Advantage"),),
    "commercial": (_BCBS,),
    "commercial-2": (("CHOICE", "UHC", "UnitedHealthcare Choice Plus"),),
    "medicaid": (("MCD", "IAMCD", "Iowa Medicaid"),),
    "self-pay": (),
    "commercial-then-medicare": (_BCBS, _MEDICARE),
    "medicare-then-medigap": (_MEDICARE, ("G", "MEDIGAP", "Medicare Supplement Plan G")),
    "medicare-in-name-only": (("F", "ZZ9", "Medicare Supplement Plan F by Acme"),),
}
SYSTEM_NAMES = {"LN": "LN", "CPT": "CPT", "local": "L"}
TEST_SPEC = re.compile(
    r"^(?P<code>[^\^*+~]+)(?:\^(?P<sys>[^*+~]*))?(?:~(?P<alt>[^\^*+]+)\^(?P<altsys>[^*+]*))?"
    r"(?:\*(?P<units>\d+))?(?P<mods>(?:\+[0-9A-Z]{2})*)$"
)


def _cases() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for path in sorted(CASES_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for case in data.get("case", []):
            yield f"{path.stem}-{case['id']}", case, data.get("defaults", {})


def _obr4(spec: str, system: str) -> tuple[str, str]:
    match = TEST_SPEC.match(spec)
    if match is None:
        raise ValueError(f"bad test spec {spec!r}")
    sys = match["sys"] if match["sys"] is not None else system
    value = f"{match['code']}^^{SYSTEM_NAMES.get(sys, sys)}"
    if match["alt"]:
        value += f"^{match['alt']}^^{match['altsys']}"
    return value, match["units"] or ""


def _message(
    control: str,
    interface: Interface,
    *,
    mrn: str,
    sex: str,
    birth: date | None,
    payer: str,
    day: date,
    npi: str,
    provider: str,
    groups: list[tuple[list[str], list[str]]],
    signature: bool | None,
) -> bytes:
    stamp = day.strftime("%Y%m%d") + "0830"
    app, facility = interface.sending_application, interface.sending_facility
    segments = [
        f"MSH|^~\\&|{app}|{facility}|LABINTAKE|REFLAB|{stamp}||ORM^O01|{control}|P|2.5.1",
        f"PID|1||{mrn}^^^{facility}^MR||Casepatient^{mrn[-4:]}||"
        f"{birth.strftime('%Y%m%d') if birth else ''}|{sex}",
    ]
    for n, plan in enumerate(PAYERS[payer], start=1):
        segments.append(f"IN1|{n}|{plan[0]}|{plan[1]}|{plan[2]}")
    family, _, given = provider.partition(" ")
    xcn = f"{npi}^{given or family}^{family}^^^^^^NPI" if npi or provider else ""
    system = interface.test_code_system
    obr = dg1 = 0
    for index, (tests, dx) in enumerate(groups, start=1):
        placer = f"{control}-{index}"
        segments.append(
            f"ORC|NW|{placer}|||||||{stamp}|||{xcn}|||||||||Case Family Practice"
            "|10 Example Rd^^Ames^IA^50010|(515)555-0100"
        )
        for spec in tests:
            obr += 1
            service, units = _obr4(spec, system)
            segments.append(f"OBR|{obr}|{placer}||{service}|||{stamp}" + "|" * 20 + units)
        for code in dx:
            dg1 += 1
            value, _, coding = code.partition("^")
            segments.append(f"DG1|{dg1}|{coding or 'I10'}|{value}^^{coding or 'I10'}")
        if signature is not None:
            answer = "Y" if signature else "N"
            segments.append(f"OBX|1|ST|SIGNATURE^Physician signature on file||{answer}")
    return ("\r".join(segments) + "\r").encode()


def corpus_messages(interfaces_dir: Path) -> list[bytes]:
    """One message per corpus case, preceded by one per `history` row of the case."""
    registry = {i.name: i for i in load_interfaces(interfaces_dir)}
    messages = []
    for n, (case_id, case, defaults) in enumerate(_cases()):

        def get(key: str, default: Any = None, case: Any = case, defaults: Any = defaults) -> Any:
            return case.get(key, defaults.get(key, default))

        interface = registry[get("sender")]
        mrn = f"RP{n:05d}"
        common = {
            "mrn": mrn,
            "sex": get("sex", ""),
            "birth": get("birth_date"),
            "payer": get("payer", "medicare"),
            "npi": get("npi", "1234567893"),
            "provider": get("provider", "Chidi Okafor"),
        }
        for h, row in enumerate(get("history", [])):
            # "2026-01-10 84443 E03.9", optionally "units=2" and "held" (see the corpus README)
            day, cpt, *rest = row.split()
            dx = [t for t in rest if "=" not in t and t != "held"]
            units = next((t[6:] for t in rest if t.startswith("units=")), "")
            messages.append(
                _message(
                    f"{case_id}-H{h}"[:60],
                    interface,
                    day=date.fromisoformat(day),
                    groups=[([f"{cpt}^CPT" + (f"*{units}" if units else "")], dx or ["Z79.899"])],
                    signature=None,
                    **common,
                )
            )
        orders = case.get("orders") or [case]
        groups = [(o["tests"], o.get("dx", get("dx", []))) for o in orders]
        if get("shared_dx", False):
            groups = [(tests, dx if i == 0 else []) for i, (tests, dx) in enumerate(groups)]
        messages.append(
            _message(
                case_id[:60],
                interface,
                day=get("dos"),
                groups=groups,
                signature=get("signature"),
                **common,
            )
        )
    for sample in sorted(interfaces_dir.glob("*/samples/*.hl7")):
        messages.extend(m for m in sample.read_bytes().split(b"\n\n") if m.strip())
    return messages


def build(url: str) -> dict[str, int]:
    """Migrate `url`, send the corpus through intake, read and verify it all."""
    migrate(url)
    settings = Settings(database_url=url, interfaces_dir=REPO / "interfaces", development=True)
    engine = make_engine(url)
    messages = corpus_messages(settings.interfaces_dir)

    async def send() -> None:
        async with Intake(settings, engine) as intake:
            for message in messages:
                await intake.handle(message.replace(b"\n", b"\r"), "192.0.2.10:5000")

    asyncio.run(send())
    registry = load_interfaces(settings.interfaces_dir)
    tables = load_code_tables(REPO / "code_tables")
    while read_pending(engine, registry):
        pass
    verified = 0
    while done := verify_pending(engine, tables, registry=registry):
        verified += done
    engine.dispose()
    return {"messages": len(messages), "verified": verified}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="SQLite file to create (must not exist)")
    args = parser.parse_args()
    if args.path.exists():
        parser.error(f"{args.path} exists; choose a new file")
    args.path.parent.mkdir(parents=True, exist_ok=True)
    counts = build(f"sqlite:///{args.path}")
    print(f"{counts['messages']} messages sent, {counts['verified']} orders verified")


if __name__ == "__main__":
    main()
