"""`GET /api/icd10`: ICD-10-CM codes by code prefix or words."""

from __future__ import annotations

from pydantic import Field

from labintake.web.schemas import ApiModel


class Icd10Result(ApiModel):
    code: str
    description: str
    billable: bool


class Icd10Search(ApiModel):
    release: str = Field(description="the ICD-10-CM table version searched")
    out_of_date: str | None = Field(
        default=None, description="present only when that release does not cover the date"
    )
    results: list[Icd10Result]
