"""`GET /healthz`: process and database up, background stages working (no authentication).

"ok": the database answers and no background stage is failing. "degraded" (HTTP 200: intake
still takes and stores messages): a stage (reader, verifier, release, deliver...) has failed
on its last attempts; `failing` names each with its error. "error" (HTTP 503): the database
does not answer. Besides, "code tables out of date" while an order not yet released was
checked against an ICD-10-CM release that does not cover its date of service (still 200: the
service runs, the lab must load the release).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from labintake.stage_health import failing_stages
from labintake.stats import out_of_date_orders
from labintake.web.deps import SessionDep
from labintake.web.schemas.health import Health

router = APIRouter()


@router.get(
    "/healthz",
    tags=["health"],
    responses={200: {"model": Health}, 503: {"model": Health, "description": "database down"}},
)
def healthz(session: SessionDep) -> JSONResponse:
    body: dict[str, Any] = {"status": "ok", "database": "ok"}
    try:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        failing = failing_stages(session)
    except SQLAlchemyError as exc:
        body = {"status": "error", "database": type(exc).__name__}
        return JSONResponse(body, status_code=503)
    if failing:
        body["status"] = "degraded"
        body["failing"] = [
            {
                "stage": f.stage,
                "since": f.since.isoformat(),
                "consecutive_failures": f.consecutive_failures,
                "error": f.last_error,
                "instance": f.instance,
            }
            for f in failing
        ]
    affected = out_of_date_orders(session)
    if affected:
        body["code_tables"] = "out of date"
        body["orders_out_of_date"] = affected
    return JSONResponse(body)
