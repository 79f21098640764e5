"""An order's lifecycle: which status may follow which, and the one way a status changes.

`TRANSITIONS` is the whole state machine: each allowed (from, to) move and the event kinds
that record it. Every status change goes through `transition` (one order, in the caller's
transaction) or `transition_many` (a set: one `UPDATE ... WHERE status IN (allowed) RETURNING
id` and one multi-row insert of the events, on SQLite and PostgreSQL alike). Each bumps the
order's `row_version` (the optimistic lock coders' actions name) and writes an `OrderEvent`;
an illegal move raises `IllegalTransitionError` before anything is written. An action that
changes no status but must win the order's version first (a coder's claim, a note, a query)
takes it with `claim_version`. The verdict itself (verified or held) is the engine's; how it
lands for an order already awaiting the office is `after_verification`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeAlias

from sqlalchemy import case, tuple_, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from labintake.db import utcnow
from labintake.errors import ConcurrentChangeError, WorkflowError
from labintake.models.orders import Order, OrderEvent
from labintake.models.tables import Bound, bind, insert_bound, insert_rows, table_of
from labintake.statuses import OrderStatus

S = OrderStatus


# the set-based statements use the tables: no ORM bulk machinery to build or run them
ORDERS = table_of(Order)
EVENTS = table_of(OrderEvent)


class OrderEventKind(StrEnum):
    """The events that record a status change (stored in `order_event.action`)."""

    VERIFIED = "verified"  # the verification worker's first look
    RE_VERIFIED = "re_verified"  # verified again after a coder's correction
    REPLAYED = "replayed"  # verified again by `labintake replay --apply`
    VERIFICATION_FAILED = "verification_failed"  # the rules failed on it
    CONTACT_RECORDED = "contact_recorded"  # a call to the office: wait for it, or back to held
    REJECTED = "rejected"
    RELEASED = "released"  # its message written to the outbox
    DELIVERED = "delivered"  # the LIS acknowledged it
    LIS_REFUSED = "lis_refused"  # the LIS answered AE/AR: back to the coders
    CANCELLED = "cancelled"  # the placer cancelled it


E = OrderEventKind
_VERIFYING = frozenset({E.VERIFIED, E.RE_VERIFIED, E.REPLAYED})
_AGAIN = frozenset({E.RE_VERIFIED, E.REPLAYED})
_CANCELLABLE = tuple(s for s in OrderStatus if s is not S.CANCELLED)


def _table() -> dict[tuple[OrderStatus, OrderStatus], frozenset[OrderEventKind]]:
    moves: dict[tuple[OrderStatus, OrderStatus], set[OrderEventKind]] = {}

    def allow(sources: Iterable[OrderStatus], targets: Iterable[OrderStatus], *kinds: E) -> None:
        for source in sources:
            for target in targets:
                moves.setdefault((source, target), set()).update(kinds)

    verdicts = (S.VERIFIED, S.HELD)
    allow([S.RECEIVED], verdicts, *_VERIFYING)
    allow([S.RECEIVED], [S.ERROR], E.VERIFICATION_FAILED)
    allow([S.VERIFIED, S.HELD], verdicts, *_AGAIN)
    # a held verdict leaves an order awaiting the office waiting (see after_verification)
    allow([S.AWAITING_OFFICE], [S.VERIFIED, S.AWAITING_OFFICE], *_AGAIN)
    queued = (S.HELD, S.AWAITING_OFFICE)
    allow(queued, queued, E.CONTACT_RECORDED)
    allow(queued, [S.REJECTED], E.REJECTED)
    allow([S.VERIFIED, *queued], [S.RELEASED], E.RELEASED)
    allow([S.RELEASED], [S.DELIVERED], E.DELIVERED)
    allow([S.RELEASED], [S.HELD], E.LIS_REFUSED)
    allow(_CANCELLABLE, [S.CANCELLED], E.CANCELLED)  # whatever its status (DOMAIN: cancels)
    return {move: frozenset(kinds) for move, kinds in moves.items()}


TRANSITIONS: Mapping[tuple[OrderStatus, OrderStatus], frozenset[OrderEventKind]] = _table()

# An event's detail: one for all, one per order, or computed from the ids that moved (called
# once, after the UPDATE and before the events are written: e.g. rows the events cite).
Details: TypeAlias = (
    Mapping[str, Any]
    | Mapping[int, Mapping[str, Any]]
    | Callable[[Sequence[int]], Mapping[int, Mapping[str, Any]]]
)


class IllegalTransitionError(WorkflowError):
    """A status change the lifecycle does not allow (a programming or workflow error)."""


def allowed(source: str, target: str, kind: str) -> bool:
    return kind in TRANSITIONS.get((OrderStatus(source), OrderStatus(target)), frozenset())


def sources_of(target: OrderStatus, kind: OrderEventKind) -> frozenset[OrderStatus]:
    """The statuses an order may leave for `target` by `kind`."""
    return frozenset(s for (s, t), kinds in TRANSITIONS.items() if t is target and kind in kinds)


def check(source: str, target: str, kind: str, order_id: int | None = None) -> None:
    """Raise IllegalTransitionError unless `source` -> `target` by `kind` is allowed."""
    if not allowed(source, target, kind):
        which = f"order {order_id}" if order_id is not None else "an order"
        raise IllegalTransitionError(
            f"{which} cannot go from {source.replace('_', ' ')} to "
            f"{target.replace('_', ' ')} ({kind.replace('_', ' ')})"
        )


def after_verification(current: str, verdict: OrderStatus) -> OrderStatus:
    """Where the engine's verdict (VERIFIED or HELD) takes an order in `current`: an order
    awaiting the office keeps waiting while it still has an open hold."""
    if verdict is S.HELD and current == S.AWAITING_OFFICE:
        return S.AWAITING_OFFICE
    return verdict


def transition(
    session: Session,
    order: Order,
    to: OrderStatus,
    kind: OrderEventKind,
    *,
    actor: str = "system",
    detail: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    version_claimed: bool = False,
    now: datetime | None = None,
) -> None:
    """Move one loaded order to `to`, in the caller's transaction, with its event.

    The UPDATE is conditional on the status the object shows, so an order changed meanwhile
    raises ConcurrentChangeError with nothing written. `values` are other columns set with the
    status (e.g. `released_at`). `version_claimed`: this transaction already bumped the
    row_version with `claim_version` (a coder's action is one version step)."""
    assert order.id is not None
    source = order.status
    check(source, to, kind, order.id)
    now = now or utcnow()
    changes: dict[str, Any] = {"status": to, "updated_at": now, **(values or {})}
    bump = {} if version_claimed else {"row_version": col(Order.row_version) + 1}
    row = session.execute(
        update(Order)
        .where(col(Order.id) == order.id, col(Order.status) == source)
        .values(**changes, **bump)
        .returning(col(Order.row_version))
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        raise ConcurrentChangeError(
            f"order {order.id} changed meanwhile; nothing was saved", order_id=order.id
        )
    for name, value in {**changes, "row_version": row[0]}.items():
        set_committed_value(order, name, value)
    insert_events(session, [_event(order.id, now, actor, kind, detail or {})])


def transition_many(
    session: Session,
    order_ids: Collection[int],
    to: OrderStatus | Mapping[int, OrderStatus],
    kind: OrderEventKind,
    *,
    actor: str = "system",
    detail: Details | None = None,
    sources: Iterable[OrderStatus] | None = None,
    versions: Mapping[int, int] | None = None,
    values: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    events: Bound | None = None,
) -> list[int]:
    """Move the orders still in an allowed status to `to` (one target, or one per order), set-
    based: one UPDATE ... RETURNING and one insert of the events. Returns the ids moved, in
    order; the others (changed meanwhile, or taken by another worker) are left alone.

    `sources` narrows the statuses moved from (each must be allowed to reach every target);
    `versions` moves an order only while its row_version is still the one read. `events`:
    the events as `bind_events` made them before the transaction, instead of `detail` (with
    the same `kind`, `actor` and `now`)."""
    if not order_ids:
        return []
    targets = set(to.values()) if isinstance(to, Mapping) else {to}
    if sources is not None:
        from_statuses = frozenset(sources)
    else:  # every status from which each target may be reached
        reachable = [sources_of(target, kind) for target in targets]
        from_statuses = frozenset.intersection(*reachable) if reachable else frozenset()
    if not from_statuses:
        names = " or ".join(sorted(targets))
        raise IllegalTransitionError(f"no order can go to {names} ({kind.replace('_', ' ')})")
    for source in from_statuses:
        for target in targets:
            check(source, target, kind)
    now = now or utcnow()
    where = [ORDERS.c.status.in_(sorted(from_statuses)), ORDERS.c.id.in_(sorted(order_ids))]
    if versions is not None:
        # With the ids themselves too: on a (id, row_version) pair alone SQLite's planner
        # walks every order in the source status (ix_order_status_id), 39 ms a chunk with
        # 50,000 orders verified, where it looks up each id.
        pairs = [(i, versions[i]) for i in order_ids]
        where.append(tuple_(ORDERS.c.id, ORDERS.c.row_version).in_(pairs))
    # A Core UPDATE on the table (the ORM's bulk-update path cost as much again as the
    # statement); the session's pending changes are flushed first, as its autoflush would.
    if session.autoflush:
        session.flush()
    moved = sorted(
        session.connection()
        .execute(
            update(ORDERS)
            .where(*where)
            .values(
                status=_status_of(to),
                row_version=ORDERS.c.row_version + 1,
                updated_at=now,
                **(values or {}),
            )
            .returning(ORDERS.c.id)
        )
        .scalars()
    )
    if moved and events is not None:
        kept = set(moved)
        insert_bound(session.connection(), events.only(kept.__contains__))
    elif moved:
        insert_events(
            session, [_event(i, now, actor, kind, d) for i, d in _details(detail, moved).items()]
        )
    return moved


def bind_events(
    dialect: Dialect,
    details: Mapping[int, Mapping[str, Any]],
    kind: OrderEventKind,
    *,
    actor: str = "system",
    now: datetime,
) -> Bound:
    """The events `transition_many` would write for the orders of `details` (by order id),
    bound before the transaction (`labintake.models.tables.bind`): on SQLite, binding them
    then does not hold the write lock intake's commits wait for. In order id order, as
    `transition_many` writes them; only the orders it moves get theirs."""
    ids = sorted(details)
    rows = [_event(i, now, actor, kind, details[i]) for i in ids]
    return bind(dialect, EVENTS, rows, owners=ids)


def _status_of(to: OrderStatus | Mapping[int, OrderStatus]) -> Any:
    """The new status: one for all, or a CASE with one branch per target (ids IN (...)) rather
    than one per order, which would cost a bound parameter per order to build."""
    if not isinstance(to, Mapping):
        return to
    by_target: dict[OrderStatus, list[int]] = {}
    for order_id, target in to.items():
        by_target.setdefault(target, []).append(order_id)
    if len(by_target) == 1:
        return next(iter(by_target))
    return case(*((ORDERS.c.id.in_(sorted(ids)), t) for t, ids in sorted(by_target.items())))


def claim_version(session: Session, order_id: int, expected_version: int) -> bool:
    """Bump the order's row_version if it is still `expected_version` (of two actions at once
    exactly one wins); whether this one did. A status change later in the same transaction
    passes `version_claimed=True`."""
    result = session.execute(
        update(Order)
        .where(col(Order.id) == order_id, col(Order.row_version) == expected_version)
        .values(row_version=col(Order.row_version) + 1, updated_at=utcnow())
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def record_event(
    session: Session,
    order_id: int,
    action: str,
    detail: Mapping[str, Any],
    *,
    actor: str = "system",
    now: datetime | None = None,
) -> None:
    """An event that changes no status (a claim, a note, a query, a reply queued)."""
    insert_events(session, [_event(order_id, now or utcnow(), actor, action, detail)])


def insert_events(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Order events in one multi-row insert (rows as `event_row` makes them): a Core INSERT
    on the table, as the ORM's bulk-insert path cost more than the statement itself. Every
    event is written this way (never as a pending ORM object), so event ids still follow the
    order the events were recorded in. Pending changes are flushed first, as autoflush would:
    an event may name an order the session has not written yet."""
    if rows:
        if session.autoflush:
            session.flush()
        insert_rows(session.connection(), EVENTS, rows)


def event_row(
    order_id: int, action: str, detail: Mapping[str, Any], *, actor: str, now: datetime
) -> dict[str, Any]:
    """One `order_event` row for `insert_events`."""
    return _event(order_id, now, actor, action, detail)


def _event(
    order_id: int, now: datetime, actor: str, action: str, detail: Mapping[str, Any]
) -> dict[str, Any]:
    return {"order_id": order_id, "at": now, "actor": actor, "action": action, "detail": detail}


def _details(detail: Details | None, moved: Sequence[int]) -> Mapping[int, Mapping[str, Any]]:
    if detail is None:
        return {i: {} for i in moved}
    if callable(detail):
        per_order = detail(moved)
        return {i: per_order[i] for i in moved}
    if detail and all(isinstance(k, int) for k in detail):
        by_id: Mapping[int, Mapping[str, Any]] = detail  # type: ignore[assignment]
        return {i: by_id[i] for i in moved}
    return dict.fromkeys(moved, detail)  # type: ignore[arg-type]
