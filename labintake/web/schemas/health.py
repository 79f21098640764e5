"""`GET /healthz`: process, database and background stages."""

from __future__ import annotations

from pydantic import Field

from labintake.web.schemas import ApiModel


class FailingStage(ApiModel):
    stage: str
    since: str
    consecutive_failures: int
    error: str
    instance: str


class Health(ApiModel):
    status: str = Field(description="ok | degraded (a stage keeps failing) | error (503)")
    database: str = Field(description='"ok", or the error class when it cannot be reached')
    failing: list[FailingStage] | None = Field(default=None, description="when degraded")
    code_tables: str | None = Field(default=None, description='"out of date" when so')
    orders_out_of_date: int | None = Field(default=None, description="orders it concerns")
