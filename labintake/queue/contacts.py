"""Contacts with the ordering office: channels, outcomes, the attempt cap and follow-up dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from labintake.errors import WorkflowError

# Unanswered attempts allowed per order. After the cap no further unanswered attempt is
# recorded: the order is due at once and the coder either releases it with a written
# override (e.g. ABN signed) or rejects it as unanswered (the sender is told by the reject).
MAX_UNANSWERED_ATTEMPTS = 4


class ContactChannel(StrEnum):
    PHONE = "phone"
    FAX = "fax"
    PORTAL = "portal"
    EMAIL = "email"


class ContactOutcome(StrEnum):
    ANSWERED = "answered"  # the office answered the question: its words are recorded
    LEFT_MESSAGE = "left_message"
    NO_ANSWER = "no_answer"
    CALLBACK_PROMISED = "callback_promised"
    SENT = "sent"  # query sent by fax, portal or e-mail; awaiting the reply
    REFUSED = "refused"  # the office declined to answer


OUTCOME_LABELS = {
    ContactOutcome.ANSWERED: "Answered",
    ContactOutcome.LEFT_MESSAGE: "Left a message",
    ContactOutcome.NO_ANSWER: "No answer",
    ContactOutcome.CALLBACK_PROMISED: "Call-back promised",
    ContactOutcome.SENT: "Query sent, awaiting reply",
    ContactOutcome.REFUSED: "Office declined",
}


_CONTROL = {c for c in range(32) if c not in (9, 10, 13)} | {127}


def plain_text(value: str, what: str) -> str:
    """Text a person typed, trimmed; control characters (NUL above all: PostgreSQL refuses
    it) are refused with a clear message rather than stored or failing in the database."""
    if any(ord(c) in _CONTROL for c in value):
        raise WorkflowError(f"{what} contains control characters; retype it as plain text")
    return value.strip()


@dataclass(frozen=True, slots=True)
class ContactInput:
    channel: ContactChannel
    outcome: ContactOutcome
    answer: str = ""  # the office's answer in its own words
    person: str = ""  # who we spoke to
    follow_up_on: date | None = None
    query_id: int | None = None

    def validated(self, today: date) -> ContactInput:
        answer = plain_text(self.answer, "the answer")
        person = plain_text(self.person, "the person's name")
        if self.outcome is ContactOutcome.ANSWERED:
            if not answer:
                raise WorkflowError("an answered contact needs the office's answer in its words")
            return ContactInput(self.channel, self.outcome, answer, person, None, self.query_id)
        follow_up = self.follow_up_on or next_working_day(today)
        if follow_up < today:
            raise WorkflowError("the follow-up date cannot be in the past")
        if follow_up > today + timedelta(days=30):
            raise WorkflowError("the follow-up date must be within 30 days")
        return ContactInput(self.channel, self.outcome, answer, person, follow_up, self.query_id)


def next_working_day(day: date) -> date:
    following = day + timedelta(days=1)
    while following.weekday() >= 5:
        following += timedelta(days=1)
    return following


def add_working_days(day: date, count: int) -> date:
    """The date `count` working days (Monday to Friday) after `day`."""
    for _ in range(count):
        day = next_working_day(day)
    return day
