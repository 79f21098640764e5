"""Verification against the database: received orders -> verified | held, and re-verification.

`verify_pending` drains orders in status `received` in batches. On PostgreSQL the batch is
claimed with `SELECT ... FOR UPDATE SKIP LOCKED`, so several instances can run side by side;
on SQLite (one writer) the batch is read and verified outside any write transaction, then
written in short transactions whose status update only succeeds while the order is still
`received` (an order someone else changed meanwhile is left alone). The orders of one message
are one requisition: a batch takes every received order of the messages it touches, and they
are verified together (`labintake.verification.engine.verify_message`), with the message's
orders in other states as context. What is written for each
verification is described in `labintake.verification.writer`. An order the rules fail on
(a bug) goes to status `error` with the reason, so it is listed and the batch goes on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.sql import Select
from sqlmodel import Session

from labintake import lifecycle
from labintake.codes.tables import CodeTables
from labintake.db import WRITE_CHUNK, WRITE_ROWS, chunked_by
from labintake.errors import ConcurrentChangeError, WorkflowError
from labintake.interfaces import InterfaceRegistry
from labintake.lifecycle import OrderEventKind
from labintake.models import Finding as FindingRow
from labintake.models import Order, OrderTest
from labintake.statuses import REVERIFIABLE, OrderStatus
from labintake.verification.engine import verify_message
from labintake.verification.findings import VerificationResult
from labintake.verification.rule_settings import DEFAULT_RULES, RuleSettings
from labintake.verification.stored import (
    ORDERS,
    OrderRecord,
    StoredOrder,
    facts_of,
    load_orders,
    load_siblings,
    orders_by_id,
    read_orders,
    select_orders,
)
from labintake.verification.stored_history import load_histories
from labintake.verification.writer import BoundResults, bind_results, write_results

if TYPE_CHECKING:
    from labintake.config import Settings
    from labintake.verification.aside import MessagesAside

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "verifier"
_REASON_LIMIT = 2000  # of a failure's text kept in the order's error and its event


def verify_stored(
    session: Session,
    stored: Sequence[StoredOrder],
    tables: CodeTables,
    rules: RuleSettings,
    extra_codes: Mapping[str, Mapping[str, str]],
    *,
    catch: bool = False,
) -> list[VerificationResult | str]:
    """Each order's result, the orders of one message verified together as one requisition
    (with the message's other live orders as context, verified with them but not returned);
    with `catch`, the orders of a message the rules fail on get the reason instead (so one bad
    message cannot hold up a batch forever)."""
    wanted = {item.id for item in stored}
    everything = list(stored) + load_siblings(session, stored)
    histories = load_histories(session, everything, tables)
    messages: dict[int, list[StoredOrder]] = defaultdict(list)
    for item in everything:
        messages[item.order.message_id].append(item)
    by_id: dict[int, VerificationResult | str] = {}
    for group in messages.values():
        group.sort(key=lambda item: (item.order.group_index, item.id))
        try:
            facts = [
                facts_of(
                    item,
                    dict(
                        extra_codes.get(str((item.order.details or {}).get("interface") or ""), {})
                    ),
                )
                for item in group
            ]
            results: list[VerificationResult | str] = list(
                verify_message(facts, tables, [histories[item.id] for item in group], rules)
            )
        except Exception as exc:
            if not catch:
                raise
            ids = ", ".join(str(item.id) for item in group if item.id in wanted)
            log.exception("verification of order(s) %s failed", ids)
            results = [f"verification failed: {type(exc).__name__}: {exc}"] * len(group)
        for item, result in zip(group, results, strict=True):
            if item.id in wanted:
                by_id[item.id] = result
    return [by_id[item.id] for item in stored]


def _interface_codes(registry: InterfaceRegistry | None) -> dict[str, Mapping[str, str]]:
    if registry is None:
        return {}
    return {interface.name: interface.test_codes for interface in registry}


def _pending(
    limit: int, messages: Collection[int] | None = None, passing: Collection[int] = ()
) -> Select[Any]:
    """Received orders by id: of `messages` only when given, none of `passing`."""
    where = [ORDERS.c.status == OrderStatus.RECEIVED]
    if messages is not None:
        where.append(ORDERS.c.message_id.in_(sorted(messages)))
    if passing:
        where.append(ORDERS.c.message_id.not_in(sorted(passing)))
    return select_orders(*where).order_by(ORDERS.c.id).limit(limit)


def _pending_siblings(orders: Sequence[OrderRecord]) -> Select[Any]:
    """The received orders of the same messages that the batch's limit left out: a message is
    verified whole."""
    ids = [o.id for o in orders]
    return select_orders(
        ORDERS.c.message_id.in_(sorted({o.message_id for o in orders})),
        ORDERS.c.status == OrderStatus.RECEIVED,
        ORDERS.c.id.not_in(ids),
    ).order_by(ORDERS.c.id)


def verify_pending(
    engine: Engine,
    tables: CodeTables,
    limit: int = 500,
    *,
    registry: InterfaceRegistry | None = None,
    rules: RuleSettings = DEFAULT_RULES,
    actor: str = SYSTEM_ACTOR,
    messages: Collection[int] | None = None,
    passing: Collection[int] = (),
) -> int:
    """Verify one batch of received orders; returns how many were verified or held.

    `messages`: only the orders of these messages; `passing`: none of these messages' (they
    are verified beside the pipeline, see `labintake.verification.aside`)."""
    extra = _interface_codes(registry)
    pending = _pending(limit, messages, passing)
    if engine.dialect.name == "postgresql":
        with Session(engine, expire_on_commit=False) as session, session.begin():
            orders = read_orders(session, pending.with_for_update(skip_locked=True))
            if not orders:
                return 0
            orders += read_orders(
                session, _pending_siblings(orders).with_for_update(skip_locked=True)
            )
            stored = load_orders(session, orders)
            results = verify_stored(session, stored, tables, rules, extra, catch=True)
            return _write_all(session, stored, results, actor)
    with Session(engine, expire_on_commit=False) as session:
        orders = read_orders(session, pending)
        if not orders:
            return 0
        orders += read_orders(session, _pending_siblings(orders))
        stored = load_orders(session, orders)
        results = verify_stored(session, stored, tables, rules, extra, catch=True)
        session.commit()  # end the read before writing
        done = 0
        pairs = list(zip(stored, results, strict=True))
        for part in chunked_by(pairs, WRITE_CHUNK, WRITE_ROWS, _rows_written):
            part_stored, part_results = [s for s, _ in part], [r for _, r in part]
            # Bound before the write lock is taken (see verification.writer.BoundResults).
            bound = bind_results(engine.dialect, _verified(part_stored, part_results))
            with session.begin():
                done += _write_all(session, part_stored, part_results, actor, bound)
        return done


def _rows_written(pair: tuple[StoredOrder, VerificationResult | str]) -> int:
    """About how many rows verifying the order writes: its status and event, its verification,
    a finding each and its tests' codes."""
    stored, result = pair
    findings = len(result.findings) if not isinstance(result, str) else 0
    return 3 + findings + len(stored.tests)


def _verified(
    stored: Sequence[StoredOrder], results: Sequence[VerificationResult | str]
) -> list[tuple[StoredOrder, VerificationResult, str]]:
    """The orders the rules gave a result for (not a failure), with the status they were
    verified in."""
    return [
        (item, result, OrderStatus.RECEIVED)
        for item, result in zip(stored, results, strict=True)
        if not isinstance(result, str)
    ]


def _write_all(
    session: Session,
    stored: Sequence[StoredOrder],
    results: Sequence[VerificationResult | str],
    actor: str,
    bound: BoundResults | None = None,
) -> int:
    done = 0
    for item, result in zip(stored, results, strict=True):
        if isinstance(result, str):
            done += _mark_failed(session, item, result, actor)
    batch = _verified(stored, results)
    outcomes = write_results(session, batch, actor, OrderEventKind.VERIFIED, bound)
    if len(outcomes) < len(batch):
        log.info("%d order(s) changed while being verified", len(batch) - len(outcomes))
    return done + len(outcomes)


def _mark_failed(session: Session, stored: StoredOrder, reason: str, actor: str) -> int:
    """Status `error` with the reason (listed, reprocessable), instead of retrying forever."""
    reason = reason[:_REASON_LIMIT]
    moved = lifecycle.transition_many(
        session,
        [stored.id],
        OrderStatus.ERROR,
        OrderEventKind.VERIFICATION_FAILED,
        actor=actor,
        detail={"status_before": OrderStatus.RECEIVED, "reason": reason},
        sources=[OrderStatus.RECEIVED],
        values={"error": reason},
    )
    return len(moved)


def verify_order(
    session: Session,
    order_id: int,
    actor: str,
    tables: CodeTables,
    *,
    registry: InterfaceRegistry | None = None,
    rules: RuleSettings = DEFAULT_RULES,
    action: OrderEventKind = OrderEventKind.RE_VERIFIED,
) -> VerificationResult:
    """Verify one stored order again in the caller's transaction (after a coder's correction).

    The other live orders of its message are verified with it as context (one requisition);
    only this order's result is written.

        Findings no longer raised become `resolved`; overridden ones keep their override.
        WorkflowError when the order is not in a state that can be verified.
    """
    order = session.get(Order, order_id)
    if order is None:
        raise WorkflowError(f"order {order_id} does not exist")
    if order.status not in REVERIFIABLE:
        raise WorkflowError(f"order {order_id} is {order.status}: it cannot be verified again")
    session.flush()
    stored = load_orders(session, orders_by_id(session, [order_id]))[0]
    result = verify_stored(session, [stored], tables, rules, _interface_codes(registry))[0]
    assert not isinstance(result, str)
    if not write_results(session, [(stored, result, order.status)], actor, action):
        raise ConcurrentChangeError(f"order {order_id} changed while it was being verified")
    _expire_written(session, order)
    return result


def _expire_written(session: Session, order: Order) -> None:
    """Expire what the session holds of the order, its tests and its findings: they were
    written by statements, not through these objects."""
    session.expire(order)
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, OrderTest | FindingRow):
            state = inspect(loaded)
            if not state.expired and state.dict.get("order_id") == order.id:
                session.expire(loaded)


@dataclass(slots=True)
class PendingVerifier:
    """For the background workers: `verifier(limit)` verifies one `verify_pending` batch of up
    to `limit` orders with the process's code tables, the sender definitions and the rule
    settings, passing by the messages set `aside`; `verifier.message(id)` verifies the
    received orders of one message (those set aside, in the thread that set them aside)."""

    settings: Settings
    engine: Engine
    senders: InterfaceRegistry
    rules: RuleSettings
    aside: MessagesAside | None = None

    def __call__(self, limit: int) -> int:
        passing = self.aside.ids() if self.aside is not None else ()
        return self._verify(limit, passing=passing)

    def message(self, message_id: int) -> int:
        # one order, and its siblings with it (a batch takes whole messages): the message
        return self._verify(1, messages=(message_id,))

    def _verify(
        self, limit: int, messages: Collection[int] | None = None, passing: Collection[int] = ()
    ) -> int:
        from labintake.codes.tables import get_code_tables

        return verify_pending(
            self.engine,
            get_code_tables(self.settings),
            limit,
            registry=self.senders,
            rules=self.rules,
            messages=messages,
            passing=passing,
        )


def pending_verifier(
    settings: Settings,
    engine: Engine,
    registry: InterfaceRegistry | None = None,
    *,
    aside: MessagesAside | None = None,
) -> PendingVerifier:
    """The background workers' verifier (`PendingVerifier`) for `settings`."""
    from labintake.interfaces import load_interfaces
    from labintake.verification.rule_settings import rules_for

    senders = registry if registry is not None else load_interfaces(settings.interfaces_dir)
    return PendingVerifier(settings, engine, senders, rules_for(settings), aside)
