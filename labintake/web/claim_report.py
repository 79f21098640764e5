"""What a bulk "Claim selected" did, read back from the queue page's address.

Never a bare "Claimed 0 order(s).": the page says how many were claimed (or taken over), how
many were skipped and why, and offers to take over the ones other coders hold, naming them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo

from sqlmodel import Session, col, select

from labintake.models.orders import Order
from labintake.queue.claims import Holder, holders


@dataclass(frozen=True, slots=True)
class HeldRow:
    order_id: int
    row_version: int
    patient: str
    holder: Holder


@dataclass(slots=True)
class ClaimReport:
    picked: int
    claimed: int
    taken_over: int
    changed: list[int] = field(default_factory=list)
    held: list[HeldRow] = field(default_factory=list)
    zone: tzinfo | None = None

    @property
    def skipped(self) -> int:
        return len(self.changed) + len(self.held)

    @property
    def holders_text(self) -> str:
        """'Ann since 10:12 (2), Ben since 09:40 (1)' for the take-over question."""
        counts: dict[str, list[HeldRow]] = {}
        for row in self.held:
            counts.setdefault(row.holder.username, []).append(row)
        parts = []
        for rows in counts.values():
            h = rows[0].holder
            since = f" since {h.since.astimezone(self.zone):%H:%M}" if h.since and self.zone else ""
            parts.append(f"{h.name}{since} ({len(rows)})")
        return ", ".join(parts)


def _ids(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.isdigit() and len(p) < 12][:50]


def claim_report(
    session: Session, params: Mapping[str, str], username: str, zone: tzinfo
) -> ClaimReport | None:
    claimed = params.get("claimed", "")
    if not claimed.isdigit() or len(claimed) > 6:
        return None
    picked = params.get("picked", "")
    taken_over = params.get("taken_over", "")
    report = ClaimReport(
        picked=int(picked) if picked.isdigit() and len(picked) < 6 else 0,
        claimed=int(claimed),
        taken_over=int(taken_over) if taken_over.isdigit() and len(taken_over) < 6 else 0,
        changed=_ids(params.get("changed", "")),
        zone=zone,
    )
    # "id:version" as ticked; the offer to take over uses each order's current version,
    # since the coder confirms against who holds it now.
    held = _ids(",".join(item.partition(":")[0] for item in params.get("held", "").split(",")))
    if held:
        orders = list(session.exec(select(Order).where(col(Order.id).in_(held))))
        held_by = holders(session, orders, username)
        for order in sorted(orders, key=lambda o: o.id or 0):
            holder = held_by.get(order.id or 0)
            if holder is None:  # put back or already given to this coder meanwhile
                continue
            report.held.append(
                HeldRow(
                    order.id or 0,
                    order.row_version,
                    f"{order.patient_family_name}, {order.patient_given_name}",
                    holder,
                )
            )
    return report
