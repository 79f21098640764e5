"""`GET /api/openapi.json`: the JSON API's OpenAPI document (:mod:`labintake.web.openapi`),
for any signed-in user or API token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from labintake.web.deps import CoderUser

router = APIRouter()


@router.get("/api/openapi.json", include_in_schema=False)
def openapi_document(request: Request, user: CoderUser) -> dict[str, Any]:
    document: dict[str, Any] = request.app.openapi()
    return document
