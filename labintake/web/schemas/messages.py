"""`/api/messages...` answers: messages that could not be read, and a reprocessing outcome."""

from __future__ import annotations

from pydantic import Field

from labintake.web.schemas import ApiModel


class ErrorMessage(ApiModel):
    id: int
    received_at: str
    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    error: str | None
    read_attempts: int


class ErrorMessageList(ApiModel):
    messages: list[ErrorMessage]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page")


class ReprocessOutcome(ApiModel):
    message_id: int
    status: str
    error: str | None
    previous_error: str | None
    order_ids: list[int]
