"""Who sends an office query and how the office answers: the lab's letterhead (from the
settings), the coder who wrote the query with their direct line, and the confidentiality
notice. The printable page and the PDF show the same."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, select

from labintake.config import Settings
from labintake.models.queue import OfficeQuery
from labintake.models.users import User


@dataclass(frozen=True, slots=True)
class Letterhead:
    lab_name: str
    lab_address: str
    lab_phone: str
    lab_fax: str
    coder_name: str
    coder_phone: str  # the coder's direct line, else the lab's phone
    notice: str
    fallback_fonts: tuple[Path, ...] = ()

    @property
    def contact_line(self) -> str:
        """'Phone ... · Return fax ...', what the lab has set of the two."""
        parts = [f"Phone {self.lab_phone}" if self.lab_phone else ""]
        parts.append(f"Return fax {self.lab_fax}" if self.lab_fax else "")
        return " · ".join(p for p in parts if p)

    @property
    def from_line(self) -> str:
        line = f"{self.coder_name}, coding"
        return line + (f" · direct line {self.coder_phone}" if self.coder_phone else "")


def letterhead_for(session: Session, settings: Settings, query: OfficeQuery) -> Letterhead:
    """The letterhead of `query`: the lab's settings and the user who wrote it."""
    author = session.exec(select(User).where(User.username == query.actor)).first()
    name = (author.display_name or author.username) if author is not None else query.actor
    phone = author.phone if author is not None and author.phone else settings.lab_phone
    return Letterhead(
        lab_name=settings.lab_name,
        lab_address=settings.lab_address,
        lab_phone=settings.lab_phone,
        lab_fax=settings.lab_fax,
        coder_name=name,
        coder_phone=phone,
        notice=settings.query_confidentiality_notice,
        fallback_fonts=tuple(settings.query_fallback_fonts),
    )
