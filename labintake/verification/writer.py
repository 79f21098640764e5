"""Storing verifications: a batch of results in a handful of statements.

For each order whose status is still the one it was verified in (the status change is the
claim: `lifecycle.transition_many`, one UPDATE ... RETURNING for the batch, to where the
engine's verdict takes it): a `Verification` row, its findings reconciled with the order's
live ones (raised again: updated in place and linked to the new verification, an override
kept; no longer raised: `resolved`; new: inserted `open`), the resolved codes of each test,
and an `OrderEvent` with what changed. Orders someone else changed meanwhile get nothing
written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session

from labintake import lifecycle
from labintake.db import utcnow
from labintake.lifecycle import OrderEventKind
from labintake.models import Finding as FindingRow
from labintake.models import OrderTest, Verification
from labintake.models.tables import insert_rows, table_of
from labintake.statuses import FindingState, OrderStatus
from labintake.verification.findings import Finding, VerificationResult
from labintake.verification.stored import FindingRecord, StoredOrder, finding_key

VERIFICATIONS = table_of(Verification)
FINDINGS = table_of(FindingRow)
TESTS = table_of(OrderTest)


@dataclass(slots=True)
class Outcome:
    """What one verification changed (also the event's detail)."""

    order_id: int
    status_before: str
    status_after: str
    added: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Plan:
    stored: StoredOrder
    result: VerificationResult
    expected_status: OrderStatus
    status: OrderStatus
    pairs: list[tuple[Finding, FindingRecord | None]]
    resolved: list[FindingRecord]


def _label(code: str, location: str) -> str:
    return f"{code}@{location}"


def _reference(finding: Finding) -> dict[str, Any]:
    return {**finding.reference, "subject": finding.subject}


def _plan(stored: StoredOrder, result: VerificationResult, expected_status: str) -> _Plan:
    existing = {finding_key(row): row for row in stored.findings}
    pairs: list[tuple[Finding, FindingRecord | None]] = []
    raised: set[tuple[str, str, str]] = set()
    for finding in result.findings:
        if finding.key not in raised:
            raised.add(finding.key)
            pairs.append((finding, existing.get(finding.key)))
    resolved = [
        row for key, row in existing.items() if key not in raised and row.state == FindingState.OPEN
    ]
    expected = OrderStatus(expected_status)
    status = lifecycle.after_verification(expected, result.status)
    return _Plan(stored, result, expected, status, pairs, resolved)


def write_results(
    session: Session,
    batch: Sequence[tuple[StoredOrder, VerificationResult, str]],
    actor: str,
    action: OrderEventKind,
) -> list[Outcome]:
    """Store (stored order, result, status it was verified in) triples; the outcomes of the
    orders written (those whose status changed meanwhile are left out)."""
    now = utcnow()
    by_expected: dict[OrderStatus, list[_Plan]] = {}
    for stored, result, expected in batch:
        plan = _plan(stored, result, expected)
        by_expected.setdefault(plan.expected_status, []).append(plan)
    outcomes: list[Outcome] = []
    for expected, plans in by_expected.items():
        by_id = {plan.stored.id: plan for plan in plans}

        def write(moved: Sequence[int], by_id: dict[int, _Plan] = by_id) -> dict[int, Any]:
            written = _write(session, [by_id[i] for i in moved], now)
            outcomes.extend(outcome for outcome, _ in written.values())
            return {i: detail for i, (_, detail) in written.items()}

        lifecycle.transition_many(
            session,
            list(by_id),
            {i: plan.status for i, plan in by_id.items()},
            action,
            actor=actor,
            detail=write,
            sources=[expected],
            values={"verified_at": now},
            now=now,
        )
    return outcomes


def _write(
    session: Session, plans: list[_Plan], now: Any
) -> dict[int, tuple[Outcome, dict[str, Any]]]:
    """The rows of the orders claimed: verifications, findings, tests; each order's outcome
    and its event's detail."""
    if not plans:
        return {}
    # One row per order: the ids come back with their order ids, so the rows need not come
    # back in parameter order (which SQLite gives only one INSERT per row).
    ids = session.execute(
        insert(VERIFICATIONS).returning(VERIFICATIONS.c.id, VERIFICATIONS.c.order_id),
        [
            {
                "order_id": plan.stored.id,
                "at": now,
                "table_versions": dict(plan.result.table_versions),
                "rules_version": plan.result.rules_version,
                "outcome": plan.result.status,
            }
            for plan in plans
        ],
    ).all()
    verification_of = {order_id: vid for vid, order_id in ids}
    new_rows: list[dict[str, Any]] = []
    kept_rows: list[dict[str, Any]] = []
    resolved_ids: list[int] = []
    test_rows: list[dict[str, Any]] = []
    written: dict[int, tuple[Outcome, dict[str, Any]]] = {}
    for plan in plans:
        order_id = plan.stored.id
        vid = verification_of[order_id]
        outcome = Outcome(order_id, plan.expected_status, plan.status)
        for finding, row in plan.pairs:
            values = {
                "verification_id": vid,
                "severity": finding.severity,
                "message": finding.message,
                "clarify": finding.clarify,
                "test_seq": finding.test_seq,
                "reference": _reference(finding),
            }
            label = _label(finding.code, finding.location)
            if row is None:
                new_rows.append(
                    {
                        **values,
                        "order_id": order_id,
                        "code": finding.code,
                        "location": finding.location,
                        "state": FindingState.OPEN,
                        "override_reason": None,
                    }
                )
                outcome.added.append(label)
            else:
                kept_rows.append({f"b_{k}": v for k, v in values.items()} | {"b_id": row.id})
                outcome.kept.append(label)
        for row in plan.resolved:
            resolved_ids.append(row.id)
            outcome.resolved.append(_label(row.code, row.location))
        by_seq = {t.seq: t for t in plan.result.tests}
        for position, test in enumerate(plan.stored.tests, start=1):
            resolved = by_seq.get(position)
            if resolved is None:
                continue
            codes = (resolved.local_code, resolved.loinc, resolved.cpt)
            if resolved.cpt is None and test.seq not in plan.stored.corrected:
                continue  # unresolved: keep what the reader recorded from the message
            if (test.local_code, test.loinc, test.cpt) != codes:
                test_rows.append(
                    {
                        "b_id": test.id,
                        "b_local": codes[0],
                        "b_loinc": codes[1],
                        "b_cpt": codes[2],
                    }
                )
        written[order_id] = (outcome, _event_detail(outcome, plan.result, vid))
    if new_rows:
        insert_rows(session.connection(), FINDINGS, new_rows)
    if kept_rows:
        session.execute(
            update(FINDINGS)
            .where(FINDINGS.c.id == bindparam("b_id"))
            .values(
                verification_id=bindparam("b_verification_id"),
                severity=bindparam("b_severity"),
                message=bindparam("b_message"),
                clarify=bindparam("b_clarify"),
                test_seq=bindparam("b_test_seq"),
                reference=bindparam("b_reference", type_=FINDINGS.c.reference.type),
            ),
            kept_rows,
        )
    if resolved_ids:
        session.execute(
            update(FINDINGS)
            .where(FINDINGS.c.id.in_(resolved_ids))
            .values(state=FindingState.RESOLVED)
        )
    if test_rows:
        session.execute(
            update(TESTS)
            .where(TESTS.c.id == bindparam("b_id"))
            .values(
                local_code=bindparam("b_local"),
                loinc=bindparam("b_loinc"),
                cpt=bindparam("b_cpt"),
            ),
            test_rows,
        )
    return written


def _event_detail(outcome: Outcome, result: VerificationResult, vid: int) -> dict[str, Any]:
    return {
        "status_before": outcome.status_before,
        "status_after": outcome.status_after,
        "verification_id": vid,
        "added": outcome.added,
        "resolved": outcome.resolved,
        "still_raised": outcome.kept,
        "table_versions": dict(result.table_versions),
        "rules_version": result.rules_version,
        "tests": [
            {
                "seq": t.seq,
                "local_code": t.local_code,
                "loinc": t.loinc,
                "cpt": t.cpt,
                "necessity": t.necessity,
                "policies": list(t.policies),
            }
            for t in result.tests
        ],
    }
