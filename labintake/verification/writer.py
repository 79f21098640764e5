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
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Dialect
from sqlmodel import Session

from labintake import lifecycle
from labintake.db import utcnow
from labintake.lifecycle import OrderEventKind
from labintake.models import Finding as FindingRow
from labintake.models import OrderTest, Verification
from labintake.models.tables import Bound, bind, insert_bound, insert_bound_returning, table_of
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


@dataclass(frozen=True, slots=True)
class BoundResults:
    """A batch of results as far as it can be written before the write transaction: each
    order's plan (by the status it was verified in), and its verification row and new
    findings bound (`labintake.models.tables.Bound`, owned by order id; the findings'
    verification id filled in once the verifications are in). On SQLite the binding then
    does not hold the write lock that intake's commits wait for."""

    now: datetime
    plans: dict[OrderStatus, list[_Plan]]
    verifications: Bound
    findings: Bound


def bind_results(
    dialect: Dialect, batch: Sequence[tuple[StoredOrder, VerificationResult, str]]
) -> BoundResults:
    """Plan and bind (stored order, result, status it was verified in) triples."""
    now = utcnow()
    plans: dict[OrderStatus, list[_Plan]] = {}
    verifications: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    owners: list[int] = []
    for stored, result, expected in batch:
        plan = _plan(stored, result, expected)
        plans.setdefault(plan.expected_status, []).append(plan)
        verifications.append(
            {
                "order_id": stored.id,
                "at": now,
                "table_versions": dict(result.table_versions),
                "rules_version": result.rules_version,
                "outcome": result.status,
            }
        )
        for finding, row in plan.pairs:
            if row is None:
                findings.append(
                    {
                        "severity": finding.severity,
                        "message": finding.message,
                        "clarify": finding.clarify,
                        "test_seq": finding.test_seq,
                        "reference": _reference(finding),
                        "order_id": stored.id,
                        "code": finding.code,
                        "location": finding.location,
                        "state": FindingState.OPEN,
                        "override_reason": None,
                    }
                )
                owners.append(stored.id)
    return BoundResults(
        now=now,
        plans=plans,
        verifications=bind(
            dialect, VERIFICATIONS, verifications, owners=[s.id for s, _, _ in batch]
        ),
        findings=bind(dialect, FINDINGS, findings, owners=owners, later=("verification_id",)),
    )


def write_results(
    session: Session,
    batch: Sequence[tuple[StoredOrder, VerificationResult, str]],
    actor: str,
    action: OrderEventKind,
    bound: BoundResults | None = None,
) -> list[Outcome]:
    """Store (stored order, result, status it was verified in) triples; the outcomes of the
    orders written (those whose status changed meanwhile are left out). `bound`: the batch
    as `bind_results` made it before the transaction (made here when not given)."""
    if bound is None:
        bound = bind_results(session.connection().dialect, batch)
    outcomes: list[Outcome] = []
    for expected, plans in bound.plans.items():
        by_id = {plan.stored.id: plan for plan in plans}

        def write(
            moved: Sequence[int], by_id: dict[int, _Plan] = by_id, bound: BoundResults = bound
        ) -> dict[int, Any]:
            written = _write(session, [by_id[i] for i in moved], bound)
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
            values={"verified_at": bound.now},
            now=bound.now,
        )
    return outcomes


def _write(
    session: Session, plans: list[_Plan], bound: BoundResults
) -> dict[int, tuple[Outcome, dict[str, Any]]]:
    """The rows of the orders claimed: verifications, findings, tests; each order's outcome
    and its event's detail."""
    if not plans:
        return {}
    claimed = {plan.stored.id for plan in plans}
    conn = session.connection()
    # One row per order: the ids come back with their order ids, so the rows need not come
    # back in parameter order (which SQLite gives only one INSERT per row).
    ids = insert_bound_returning(
        conn, bound.verifications.only(claimed.__contains__), ("id", "order_id")
    )
    verification_of = {order_id: vid for vid, order_id in ids}
    new_rows = bound.findings.only(claimed.__contains__)
    new_rows.fill("verification_id", verification_of.__getitem__)
    kept_rows: list[dict[str, Any]] = []
    resolved_ids: list[int] = []
    test_rows: list[dict[str, Any]] = []
    written: dict[int, tuple[Outcome, dict[str, Any]]] = {}
    for plan in plans:
        order_id = plan.stored.id
        vid = verification_of[order_id]
        outcome = Outcome(order_id, plan.expected_status, plan.status)
        for finding, row in plan.pairs:
            label = _label(finding.code, finding.location)
            if row is None:
                outcome.added.append(label)
                continue
            kept_rows.append(
                {
                    "b_verification_id": vid,
                    "b_severity": finding.severity,
                    "b_message": finding.message,
                    "b_clarify": finding.clarify,
                    "b_test_seq": finding.test_seq,
                    "b_reference": _reference(finding),
                    "b_id": row.id,
                }
            )
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
    insert_bound(conn, new_rows)
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
