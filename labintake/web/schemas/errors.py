"""The JSON API's error answers (built in :mod:`labintake.web.errors`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from labintake.web.schemas import ApiModel


class ApiError(ApiModel):
    """401, 403, 404, 409, 422 (a bad HL7 value, an idempotency key reused), 429, 503."""

    error: str = Field(description="the kind of error, e.g. ConcurrentChangeError")
    detail: str = Field(description="what went wrong, for a person to read")
    field: str | None = Field(default=None, description="the request field at fault, if one")
    order_id: int | None = Field(default=None, description="409 on a stale row_version")
    current_row_version: int | None = Field(default=None, description="409: send this one")


class ValidationProblem(ApiModel):
    location: str = Field(description='e.g. "body.row_version" or "query.limit"')
    message: str


class ValidationFailure(ApiModel):
    """422: the request does not fit the route's parameters or body."""

    error: Literal["ValidationError"]
    detail: list[ValidationProblem]
