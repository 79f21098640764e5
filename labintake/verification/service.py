"""Verification against the database: received orders -> verified | held, and re-verification.

`verify_pending` drains orders in status `received` in batches. On PostgreSQL the batch is
claimed with `SELECT ... FOR UPDATE SKIP LOCKED`, so several instances can run side by side;
on SQLite (one writer) the batch is read and verified outside any write transaction, then
written in short transactions whose status update only succeeds while the order is still
`received` at the version read (an order someone else changed meanwhile is left alone).

Each verification writes a `Verification` row (table versions, rules version, outcome), keeps
one `Finding` row per distinct finding (raised again: updated in place and linked to the new
verification; an override stays; no longer raised: `resolved`), stores the resolved codes on
each test, and records an `OrderEvent` with what changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.codes.tables import CodeTables
from labintake.db import utcnow
from labintake.errors import ConcurrentChangeError, WorkflowError
from labintake.interfaces import InterfaceRegistry
from labintake.models import Finding as FindingRow
from labintake.models import Order, OrderEvent, Verification
from labintake.statuses import OrderStatus, Severity
from labintake.verification.engine import verify
from labintake.verification.findings import Finding, VerificationResult
from labintake.verification.rule_settings import DEFAULT_RULES, RuleSettings
from labintake.verification.stored import (
    StoredOrder,
    facts_of,
    load_histories,
    load_orders,
)

if TYPE_CHECKING:
    from labintake.config import Settings

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "verifier"
# Statuses in which an order may be verified again (after a correction, or by a replay).
REVERIFIABLE = frozenset(
    {
        OrderStatus.RECEIVED.value,
        OrderStatus.VERIFIED.value,
        OrderStatus.HELD.value,
        OrderStatus.AWAITING_OFFICE.value,
    }
)
_WRITE_CHUNK = 100


@dataclass(slots=True)
class Outcome:
    """What one verification changed (also the event's detail)."""

    order_id: int
    status_before: str
    status_after: str
    added: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _label(code: str, location: str) -> str:
    return f"{code}@{location}"


def _key(row: FindingRow) -> tuple[str, str, str]:
    return (row.code, row.location, str((row.reference or {}).get("subject", "")))


def _reference(finding: Finding) -> dict[str, Any]:
    return {**finding.reference, "subject": finding.subject}


def new_status(current: str, findings: Sequence[tuple[str, str]]) -> str:
    """Held while an open hold remains (an order awaiting the office keeps waiting).

    `findings` are the (state, severity) pairs of the findings raised by this verification.
    """
    open_hold = any(
        state == "open" and severity == Severity.HOLD.value for state, severity in findings
    )
    if not open_hold:
        return OrderStatus.VERIFIED.value
    if current == OrderStatus.AWAITING_OFFICE.value:
        return current
    return OrderStatus.HELD.value


def write_result(
    session: Session,
    stored: StoredOrder,
    result: VerificationResult,
    actor: str,
    action: str,
    *,
    expected_status: str,
) -> Outcome | None:
    """Store one verification; None (and nothing written) when the order's status is no
    longer `expected_status`."""
    order_id = stored.id
    now = utcnow()
    existing = {_key(row): row for row in stored.findings}
    plan: list[tuple[Finding, FindingRow | None]] = []
    raised: set[tuple[str, str, str]] = set()
    for finding in result.findings:
        if finding.key not in raised:
            raised.add(finding.key)
            plan.append((finding, existing.get(finding.key)))
    status = new_status(
        expected_status,
        [(row.state if row is not None else "open", f.severity.value) for f, row in plan],
    )
    # The status update is the claim: nothing else is written unless it succeeds.
    claimed = session.execute(
        update(Order)
        .where(col(Order.id) == order_id, col(Order.status) == expected_status)
        .values(
            status=status,
            row_version=col(Order.row_version) + 1,
            updated_at=now,
            verified_at=now,
        )
        .execution_options(synchronize_session="fetch")
    )
    if getattr(claimed, "rowcount", 1) != 1:
        return None
    outcome = Outcome(order_id, expected_status, status)
    verification = Verification(
        order_id=order_id,
        at=now,
        table_versions=dict(result.table_versions),
        rules_version=result.rules_version,
        outcome=result.status.value,
    )
    session.add(verification)
    session.flush()
    assert verification.id is not None
    for finding, row in plan:
        if row is None:
            row = FindingRow(
                order_id=order_id,
                verification_id=verification.id,
                code=finding.code.value,
                severity=finding.severity.value,
                location=finding.location,
                message=finding.message,
                clarify=finding.clarify,
                test_seq=finding.test_seq,
                reference=_reference(finding),
            )
            outcome.added.append(_label(row.code, row.location))
        else:
            outcome.kept.append(_label(row.code, row.location))
            row.verification_id = verification.id
            row.severity = finding.severity.value
            row.message = finding.message
            row.clarify = finding.clarify
            row.test_seq = finding.test_seq
            row.reference = _reference(finding)
        session.add(row)
    for key, row in existing.items():
        if key not in raised and row.state == "open":
            row.state = "resolved"
            session.add(row)
            outcome.resolved.append(_label(row.code, row.location))
    by_seq = {t.seq: t for t in result.tests}
    for position, test in enumerate(stored.tests, start=1):
        resolved = by_seq.get(position)
        if resolved is None or resolved.cpt is None:
            continue  # unresolved: keep what the reader recorded from the message
        codes = (resolved.local_code, resolved.loinc, resolved.cpt)
        if (test.local_code, test.loinc, test.cpt) != codes:
            test.local_code, test.loinc, test.cpt = codes
            session.add(test)
    session.add(
        OrderEvent(
            order_id=order_id,
            at=now,
            actor=actor,
            action=action,
            detail={
                "status_before": outcome.status_before,
                "status_after": outcome.status_after,
                "verification_id": verification.id,
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
            },
        )
    )
    return outcome


def _verify_all(
    session: Session,
    stored: Sequence[StoredOrder],
    tables: CodeTables,
    rules: RuleSettings,
    extra_codes: Mapping[str, Mapping[str, str]],
    *,
    catch: bool = False,
) -> list[VerificationResult | str]:
    """Each order's result; with `catch`, an order the rules fail on gets the reason instead
    (so one bad order cannot hold up a batch forever)."""
    histories = load_histories(session, stored, tables)
    results: list[VerificationResult | str] = []
    for item in stored:
        interface = str((item.order.details or {}).get("interface") or "")
        try:
            facts = facts_of(item, dict(extra_codes.get(interface, {})))
            results.append(verify(facts, tables, histories[item.id], rules))
        except Exception as exc:
            if not catch:
                raise
            log.exception("verification of order %s failed", item.id)
            results.append(f"verification failed: {type(exc).__name__}: {exc}")
    return results


def _interface_codes(registry: InterfaceRegistry | None) -> dict[str, Mapping[str, str]]:
    if registry is None:
        return {}
    return {interface.name: interface.test_codes for interface in registry}


def _pending(limit: int) -> Any:
    return (
        select(Order)
        .where(col(Order.status) == OrderStatus.RECEIVED.value)
        .order_by(col(Order.id))
        .limit(limit)
    )


def verify_pending(
    engine: Engine,
    tables: CodeTables,
    limit: int = 500,
    *,
    registry: InterfaceRegistry | None = None,
    rules: RuleSettings = DEFAULT_RULES,
    actor: str = SYSTEM_ACTOR,
) -> int:
    """Verify one batch of received orders; returns how many were verified or held."""
    extra = _interface_codes(registry)
    if engine.dialect.name == "postgresql":
        with Session(engine, expire_on_commit=False) as session, session.begin():
            orders = list(session.exec(_pending(limit).with_for_update(skip_locked=True)))
            if not orders:
                return 0
            stored = load_orders(session, orders)
            results = _verify_all(session, stored, tables, rules, extra, catch=True)
            return _write_all(session, stored, results, actor)
    with Session(engine, expire_on_commit=False) as session:
        orders = list(session.exec(_pending(limit)))
        if not orders:
            return 0
        stored = load_orders(session, orders)
        results = _verify_all(session, stored, tables, rules, extra, catch=True)
        session.commit()  # end the read (objects stay loaded) before writing
        done = 0
        for start in range(0, len(stored), _WRITE_CHUNK):
            with session.begin():
                done += _write_all(
                    session,
                    stored[start : start + _WRITE_CHUNK],
                    results[start : start + _WRITE_CHUNK],
                    actor,
                )
        return done


def _write_all(
    session: Session,
    stored: Sequence[StoredOrder],
    results: Sequence[VerificationResult | str],
    actor: str,
) -> int:
    done = 0
    for item, result in zip(stored, results, strict=True):
        if isinstance(result, str):
            done += _mark_failed(session, item, result, actor)
            continue
        outcome = write_result(
            session,
            item,
            result,
            actor,
            "verified",
            expected_status=OrderStatus.RECEIVED.value,
        )
        if outcome is None:
            log.info("order %s changed while being verified; left to its new owner", item.id)
            continue
        done += 1
    return done


def _mark_failed(session: Session, stored: StoredOrder, reason: str, actor: str) -> int:
    """Status `error` with the reason (listed, reprocessable), instead of retrying forever."""
    now = utcnow()
    claimed = session.execute(
        update(Order)
        .where(col(Order.id) == stored.id, col(Order.status) == OrderStatus.RECEIVED.value)
        .values(
            status=OrderStatus.ERROR.value,
            error=reason[:2000],
            row_version=col(Order.row_version) + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session="fetch")
    )
    if getattr(claimed, "rowcount", 1) != 1:
        return 0
    session.add(
        OrderEvent(
            order_id=stored.id,
            at=now,
            actor=actor,
            action="verification_failed",
            detail={"status_before": OrderStatus.RECEIVED.value, "reason": reason[:2000]},
        )
    )
    return 1


def verify_order(
    session: Session,
    order_id: int,
    actor: str,
    tables: CodeTables,
    *,
    registry: InterfaceRegistry | None = None,
    rules: RuleSettings = DEFAULT_RULES,
    action: str = "re_verified",
) -> VerificationResult:
    """Verify one stored order again in the caller's transaction (after a coder's correction).

    Findings no longer raised become `resolved`; overridden ones keep their override.
    WorkflowError when the order is not in a state that can be verified.
    """
    order = session.get(Order, order_id)
    if order is None:
        raise WorkflowError(f"order {order_id} does not exist")
    if order.status not in REVERIFIABLE:
        raise WorkflowError(f"order {order_id} is {order.status}: it cannot be verified again")
    session.flush()
    stored = load_orders(session, [order])[0]
    result = _verify_all(session, [stored], tables, rules, _interface_codes(registry))[0]
    assert not isinstance(result, str)
    outcome = write_result(session, stored, result, actor, action, expected_status=order.status)
    if outcome is None:
        raise ConcurrentChangeError(f"order {order_id} changed while it was being verified")
    session.flush()
    return result


def pending_verifier(
    settings: Settings,
    engine: Engine,
    registry: InterfaceRegistry | None = None,
    *,
    limit: int = 500,
) -> Callable[[], int]:
    """A batch function for the background workers: one `verify_pending` batch per call, with
    the process's code tables, the sender definitions and the rule settings of `settings`."""
    from labintake.codes.tables import get_code_tables
    from labintake.interfaces import load_interfaces
    from labintake.verification.rule_settings import rules_for

    rules = rules_for(settings)
    senders = registry if registry is not None else load_interfaces(settings.interfaces_dir)

    def run() -> int:
        return verify_pending(
            engine, get_code_tables(settings), limit, registry=senders, rules=rules
        )

    return run
