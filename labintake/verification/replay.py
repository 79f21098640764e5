"""Replay: verify stored orders again against the tables in force (or a named version) and
report what would change - the impact of a quarterly code-table update.

Each change names the table versions the stored verification used beside those of the replay
where they differ (`coverage coverage-2026.4->coverage-2026.10`): pinning the version an
import just wrote (`labintake replay --since DATE --tables VERSION`) shows what that import
changes, whichever its kind (ncd, ncci-ptp, mue, catalog, icd10cm).

Read-only unless `apply=True`; then each order whose findings or status would change gets a
new Verification, its findings reconciled and an OrderEvent (actor "replay"), in the same way
as a coder's re-verification. Released and delivered orders are reported, never changed;
cancelled, rejected and unreadable orders are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake import lifecycle
from labintake.codes.tables import CodeTables
from labintake.interfaces import InterfaceRegistry
from labintake.lifecycle import OrderEventKind
from labintake.models import Order, Verification
from labintake.statuses import REVERIFIABLE, FindingCode, FindingState
from labintake.verification.findings import VerificationResult
from labintake.verification.rule_settings import DEFAULT_RULES, RuleSettings
from labintake.verification.service import verify_stored
from labintake.verification.stored import (
    NOT_HISTORY,
    StoredOrder,
    finding_key,
    load_orders,
    orders_by_id,
)
from labintake.verification.writer import write_results

if TYPE_CHECKING:
    from labintake.config import Settings

REPLAY_ACTOR = "replay"
_BATCH = 200


@dataclass(slots=True)
class ReplayChange:
    order_id: int
    placer_order_number: str
    date_of_service: date | None
    status_before: str
    status_after: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    table_versions: dict[str, str] = field(default_factory=dict)
    versions_before: dict[str, str] = field(default_factory=dict)  # of the stored verification
    applied: bool = False
    note: str = ""

    def describe(self) -> str:
        status = (
            f"{self.status_before} -> {self.status_after}"
            if self.status_before != self.status_after
            else self.status_before
        )
        parts = [f"order {self.order_id} {self.placer_order_number or '-'}"]
        if self.date_of_service is not None:
            parts.append(f"dos {self.date_of_service:%Y-%m-%d}")
        parts.append(status)
        parts += [f"+{label}" for label in self.added] + [f"-{label}" for label in self.removed]
        parts += [
            f"{kind} {before}->{self.table_versions[kind]}"
            for kind, before in sorted(self.versions_before.items())
            if self.table_versions.get(kind, before) != before
        ]
        if self.note:
            parts.append(f"({self.note})")
        if self.applied:
            parts.append("[applied]")
        return "  ".join(parts)


@dataclass(slots=True)
class ReplayReport:
    checked: int = 0
    changes: list[ReplayChange] = field(default_factory=list)
    # orders whose diagnoses no loaded ICD-10-CM release covers (checked against the newest)
    out_of_date: int = 0

    @property
    def status_changes(self) -> int:
        return sum(1 for c in self.changes if c.status_before != c.status_after)

    @property
    def applied(self) -> int:
        return sum(1 for c in self.changes if c.applied)


def _label(code: str, location: str) -> str:
    return f"{code}@{location}"


def _batches(engine: Engine, since: date) -> Iterator[list[int]]:
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    last = 0
    while True:
        with Session(engine) as session:
            ids = list(
                session.exec(
                    select(Order.id)
                    .where(
                        col(Order.id) > last,
                        col(Order.status).not_in(NOT_HISTORY),
                        or_(
                            col(Order.date_of_service) >= since,
                            and_(
                                col(Order.date_of_service).is_(None),
                                col(Order.created_at) >= start,
                            ),
                        ),
                    )
                    .order_by(col(Order.id))
                    .limit(_BATCH)
                )
            )
        if not ids:
            return
        yield [i for i in ids if i is not None]
        last = max(i for i in ids if i is not None)


def _stored_versions(session: Session, ids: list[int]) -> dict[int, dict[str, str]]:
    """order id -> the table versions of its latest stored verification."""
    latest = (
        select(func.max(Verification.id))
        .where(col(Verification.order_id).in_(ids))
        .group_by(col(Verification.order_id))
    )
    rows = session.exec(
        select(Verification.order_id, Verification.table_versions).where(
            col(Verification.id).in_(latest)
        )
    )
    return {order_id: {str(k): str(v) for k, v in versions.items()} for order_id, versions in rows}


def replay(
    engine: Engine,
    tables: CodeTables,
    since: date,
    *,
    apply: bool = False,
    registry: InterfaceRegistry | None = None,
    rules: RuleSettings = DEFAULT_RULES,
    actor: str = REPLAY_ACTOR,
) -> ReplayReport:
    extra = {i.name: dict(i.test_codes) for i in registry} if registry is not None else {}
    report = ReplayReport()
    for ids in _batches(engine, since):
        with Session(engine, expire_on_commit=False) as session:
            to_write: list[tuple[StoredOrder, VerificationResult, str]] = []
            pending: dict[int, ReplayChange] = {}
            stored = load_orders(session, orders_by_id(session, ids))
            before = _stored_versions(session, ids)
            # the orders of one message are verified together, as the service does
            results = verify_stored(session, stored, tables, rules, extra)
            for item, result in zip(stored, results, strict=True):
                assert not isinstance(result, str)
                report.checked += 1
                order = item.order
                current = {finding_key(f): f for f in item.findings}
                raised = {f.key: f for f in result.findings}
                if any(f.code is FindingCode.CODE_TABLES_OUT_OF_DATE for f in result.findings):
                    report.out_of_date += 1
                added = [_label(k[0], k[1]) for k in raised if k not in current]
                removed = [
                    _label(k[0], k[1])
                    for k, row in current.items()
                    if k not in raised and row.state == FindingState.OPEN
                ]
                changeable = order.status in REVERIFIABLE
                after = (
                    lifecycle.after_verification(order.status, result.status)
                    if changeable
                    else order.status
                )
                if not added and not removed and after == order.status:
                    continue
                change = ReplayChange(
                    order_id=item.id,
                    placer_order_number=order.placer_order_number,
                    date_of_service=order.date_of_service,
                    status_before=order.status,
                    status_after=after,
                    added=added,
                    removed=removed,
                    table_versions=dict(result.table_versions),
                    versions_before=before.get(item.id, {}),
                )
                if not changeable:
                    change.note = (
                        f"already {order.status}; would now be {result.status}; not changed"
                    )
                elif apply:
                    to_write.append((item, result, order.status))
                    pending[item.id] = change
                report.changes.append(change)
            if apply and to_write:
                written = {
                    o.order_id
                    for o in write_results(session, to_write, actor, OrderEventKind.REPLAYED)
                }
                session.commit()
                for order_id, change in pending.items():
                    change.applied = order_id in written
                    if not change.applied:
                        change.note = "changed meanwhile; skipped"
    return report


def run_replay_command(
    settings: Settings,
    since: date,
    table_version: str | None,
    apply: bool,
    echo: Callable[[str], object],
) -> int:
    """`labintake replay`: load the tables (all, or pinned to one version), replay, print one
    line per changed order and a summary. Returns the exit code."""
    from labintake.codes.tables import load_code_tables
    from labintake.db import make_engine
    from labintake.errors import CodeTableError, ConfigurationError
    from labintake.interfaces import load_interfaces
    from labintake.verification.rule_settings import rules_for

    try:
        tables = load_code_tables(settings.code_tables_dir, only_version=table_version)
        registry = load_interfaces(settings.interfaces_dir)
        rules = rules_for(settings)
    except (CodeTableError, ConfigurationError) as exc:
        echo(f"error: {exc}")
        return 2
    engine = make_engine(settings.database_url)
    try:
        report = replay(engine, tables, since, apply=apply, registry=registry, rules=rules)
    finally:
        engine.dispose()
    for change in report.changes:
        echo(change.describe())
    pinned = f" pinned to {table_version}" if table_version else ""
    mode = f"applied to {report.applied}" if apply else "read-only: nothing written"
    echo(
        f"{report.checked} order(s) since {since:%Y-%m-%d} checked against the code tables"
        f"{pinned}: {len(report.changes)} would change ({report.status_changes} in status); "
        f"{mode}."
    )
    if report.out_of_date:
        echo(
            f"{report.out_of_date} of them have no ICD-10-CM release covering their date of "
            "service: their diagnoses were checked against the newest loaded release "
            "(CODE_TABLES_OUT_OF_DATE). Load the release in force with `labintake codes import "
            "icd10cm`."
        )
    return 0
