"""`GET /api/stats`: the dashboard's figures (see :class:`labintake.stats.Snapshot`)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from labintake.web.schemas import ApiModel


class NameCount(ApiModel):
    name: str
    count: int


class OfficeQueries(ApiModel):
    office: str
    open: int
    oldest: str


class HourCounts(ApiModel):
    """One hour and how many orders reached each stage in it (received, verified, ...)."""

    model_config = ConfigDict(extra="allow")

    hour: str


class Turnaround(ApiModel):
    count: int
    median_minutes: float | None
    p90_minutes: float | None


class Reconciliation(ApiModel):
    received: int
    delivered: int
    in_progress: dict[str, int]
    closed: dict[str, int]
    unaccounted: int = Field(description="released or delivered without an outbox message")


class Stats(ApiModel):
    as_of: str
    window_hours: int
    by_status: dict[str, int]
    holds_by_reason: list[NameCount]
    holds_by_office: list[NameCount]
    holds_by_sender: list[NameCount]
    aging: list[NameCount]
    open_queries_by_office: list[OfficeQueries]
    per_hour: list[HourCounts]
    turnaround_released: Turnaround
    turnaround_delivered: Turnaround
    turnaround_query: Turnaround
    outbox: dict[str, int]
    failing_deliveries: int
    reconciliation: Reconciliation
    messages_received: int
    extra: dict[str, Any]
    code_tables_out_of_date: int
