"""ICD-10-CM look-up by code or words, for the coder (HTML fragment and JSON)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from labintake.codes.tables import get_code_tables
from labintake.errors import CodeTableError
from labintake.web.deps import CoderUser, SettingsDep
from labintake.web.rendering import render
from labintake.web.schemas.icd10 import Icd10Search

router = APIRouter()


def _search(settings: Any, q: str, on: date | None) -> tuple[str, str, list[Any]]:
    """(release version, out-of-date note or "", entries) for the look-up."""
    tables = get_code_tables(settings)
    day = on or date.today()
    choice = tables.icd10_choice(day)
    release = choice.release
    if release is None:
        raise CodeTableError("no ICD-10-CM release is loaded")
    note = ""
    if not choice.covered:  # never silently: the coder sees that it is not the right release
        note = f"newest loaded; code tables out of date: no release covers {day:%Y-%m-%d}"
    return release.version, note, release.search(q, limit=25) if q.strip() else []


@router.get("/icd10")
def icd10_lookup(
    request: Request,
    user: CoderUser,
    settings: SettingsDep,
    q: str = Query("", max_length=100),
    on: date | None = None,
) -> Response:
    version, note, entries = _search(settings, q, on)
    label = f"{version} ({note})" if note else version
    return render(request, "partials/icd10.html", {"version": label, "entries": entries, "q": q})


# out_of_date is left out unless set (exclude_unset), as before the model.
@router.get(
    "/api/icd10", response_model=Icd10Search, response_model_exclude_unset=True, tags=["codes"]
)
def icd10_api(
    user: CoderUser, settings: SettingsDep, q: str = Query(max_length=100), on: date | None = None
) -> dict[str, Any]:
    version, note, entries = _search(settings, q, on)
    return {
        "release": version,
        **({"out_of_date": note} if note else {}),
        "results": [
            {"code": e.code, "description": e.description, "billable": e.billable} for e in entries
        ],
    }
