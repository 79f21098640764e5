"""Bundling and units: NCCI procedure-to-procedure (PTP) edits, panel components, MUE limits.

Loaded from `code_tables/bundling/<version>/` (`ptp.tsv`, `mue.csv`, `panels.toml`) by
`labintake.codes.tables`; the official CMS quarterly files are brought in with
`labintake codes import ncci-ptp|mue FILE` (see `labintake.codes.importers`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

MODIFIER_INDICATORS = ("0", "1", "9")


@dataclass(frozen=True)
class PtpEdit:
    """Column 2 is not paid with column 1 on the same day.

    `modifier_indicator`: 0 never allowed, 1 allowed with an NCCI-associated modifier
    (e.g. 59/XU), 9 the edit does not apply. `deleted` is the first day it no longer applies.
    """

    column1: str
    column2: str
    modifier_indicator: str
    effective: date
    deleted: date | None = None
    rationale: str = ""
    # False: a hand-entered row not checked against the CMS file (imported rows are official)
    confirmed: bool = True

    def active_on(self, day: date) -> bool:
        return self.effective <= day and (self.deleted is None or day < self.deleted)


@dataclass(frozen=True)
class MueLimit:
    """Most units of `cpt` per patient per date of service.

    MAI (MUE adjudication indicator): 1 line edit, 2 absolute date-of-service edit (policy),
    3 date-of-service edit (clinical).
    """

    cpt: str
    units: int
    mai: int
    rationale: str = ""
    confirmed: bool = True  # False: a hand-entered value not checked against the CMS file


class Bundling:
    def __init__(
        self,
        version: str,
        edits: Iterable[PtpEdit] = (),
        mue: Iterable[MueLimit] = (),
        panels: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.version = version
        self._edits: dict[tuple[str, str], list[PtpEdit]] = {}
        count = 0
        for edit in edits:
            self._edits.setdefault((edit.column1, edit.column2), []).append(edit)
            count += 1
        self.edit_count = count
        self._mue = {limit.cpt: limit for limit in mue}
        self._panels = {k.upper(): tuple(v) for k, v in (panels or {}).items()}

    def ptp(self, cpt_a: str, cpt_b: str, on: date) -> PtpEdit | None:
        """The edit in force on `on` for this pair, whichever code is column 1."""
        a, b = cpt_a.strip().upper(), cpt_b.strip().upper()
        for key in ((a, b), (b, a)):
            for edit in self._edits.get(key, ()):
                if edit.active_on(on) and edit.modifier_indicator != "9":
                    return edit
        return None

    def panel_components(self, cpt: str) -> tuple[str, ...]:
        return self._panels.get(cpt.strip().upper(), ())

    def panels(self) -> dict[str, tuple[str, ...]]:
        return dict(self._panels)

    def panels_containing(self, cpt: str) -> list[str]:
        code = cpt.strip().upper()
        return [panel for panel, parts in self._panels.items() if code in parts]

    def mue(self, cpt: str) -> MueLimit | None:
        return self._mue.get(cpt.strip().upper())

    def mue_count(self) -> int:
        return len(self._mue)


# --- stored file formats (our own, simple; the CMS layouts are read by `importers`) ---
# The last column, `confirmed` (yes/no), says whether the row was checked against the official
# CMS file; files written before the column existed are read as confirmed (they were imported).

PTP_HEADER = "column1\tcolumn2\tmodifier_indicator\teffective\tdeleted\trationale\tconfirmed"
MUE_HEADER = "cpt,units,mai,rationale,confirmed"
_PTP_HEADER_V1 = PTP_HEADER.rsplit("\t", 1)[0]
_MUE_HEADER_V1 = MUE_HEADER.rsplit(",", 1)[0]
_CONFIRMED = {"yes": True, "no": False}


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _confirmed(text: str, where: str) -> bool:
    value = _CONFIRMED.get(text.strip().lower())
    if value is None:
        raise ValueError(f"{where}: confirmed must be yes or no, not {text!r}")
    return value


def format_ptp_tsv(edits: Iterable[PtpEdit]) -> str:
    lines = [PTP_HEADER]
    for e in sorted(edits, key=lambda e: (e.column1, e.column2, e.effective)):
        deleted = e.deleted.isoformat() if e.deleted else ""
        lines.append(
            f"{e.column1}\t{e.column2}\t{e.modifier_indicator}\t{e.effective.isoformat()}\t"
            f"{deleted}\t{e.rationale}\t{_yes_no(e.confirmed)}"
        )
    return "\n".join(lines) + "\n"


def read_ptp_tsv(text: str, where: str) -> list[PtpEdit]:
    """Our stored PTP table; any malformed row is an error (it was written by the importer)."""
    lines = text.splitlines()
    header = lines[0].strip() if lines else ""
    if header not in (PTP_HEADER, _PTP_HEADER_V1):
        raise ValueError(f"{where}: first line must be the header {PTP_HEADER!r}")
    fields = header.count("\t") + 1
    edits: list[PtpEdit] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != fields or parts[2] not in MODIFIER_INDICATORS:
            raise ValueError(f"{where} line {number}: expected {fields} tab-separated fields")
        edits.append(
            PtpEdit(
                column1=parts[0],
                column2=parts[1],
                modifier_indicator=parts[2],
                effective=date.fromisoformat(parts[3]),
                deleted=date.fromisoformat(parts[4]) if parts[4] else None,
                rationale=parts[5],
                confirmed=_confirmed(parts[6], f"{where} line {number}") if fields == 7 else True,
            )
        )
    return edits


def format_mue_csv(limits: Iterable[MueLimit]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MUE_HEADER.split(","))
    for limit in sorted(limits, key=lambda m: m.cpt):
        writer.writerow(
            [limit.cpt, limit.units, limit.mai, limit.rationale, _yes_no(limit.confirmed)]
        )
    return out.getvalue()


def read_mue_csv(text: str, where: str) -> list[MueLimit]:
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames not in (MUE_HEADER.split(","), _MUE_HEADER_V1.split(",")):
        raise ValueError(f"{where}: header must be {MUE_HEADER!r}")
    limits: list[MueLimit] = []
    for row in reader:
        try:
            confirmed = row.get("confirmed")
            limits.append(
                MueLimit(
                    cpt=row["cpt"].strip().upper(),
                    units=int(row["units"]),
                    mai=int(row["mai"]),
                    rationale=row.get("rationale") or "",
                    confirmed=_confirmed(confirmed, where) if confirmed is not None else True,
                )
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} line {reader.line_num}: {exc}") from exc
    return limits
