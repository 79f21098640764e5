"""The queue screen: held orders, filters saved per user, urgent first, keyset pages."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, tzinfo
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from labintake import audit
from labintake.errors import HeldByAnotherError, WorkflowError
from labintake.queue.claims import TAKEN_OVER
from labintake.queue.listing import (
    DueFilter,
    PriorityFilter,
    QueueFilter,
    filter_choices,
    list_queue,
    queue_counts,
)
from labintake.queue.ordering import QueueSort
from labintake.queue.outcomes import RELEASE_NOTES, release_note
from labintake.statuses import FindingCode
from labintake.web.claim_report import claim_report
from labintake.web.deps import CoderActor, CoderUser, QueueDep, SessionDep
from labintake.web.rendering import render
from labintake.web.responses import go_to

router = APIRouter()

FILTER_KEYS = (
    "reason",
    "office",
    "sender",
    "assignee",
    "status",
    "age",
    "due",
    "q",
    "priority",
    "sort",
    "limit",
)
PAGE_SIZES = ("25", "50", "100", "200")
DONE_MESSAGES = {
    "released": "Order released to the lab. Nothing else is waiting in your queue.",
    "rejected": "Order rejected. Nothing else is waiting in your queue.",
    "parked": "Contact recorded; the order waits for the office until its follow-up date. "
    "Nothing else is waiting in your queue.",
}
OPTIONAL_COLUMNS = ("dos", "tests", "payer", "sender", "office", "assignee", "attempts", "age")
DEFAULT_COLUMNS = ("dos", "tests", "office", "age")
COLUMN_LABELS = {"dos": "date of service", "attempts": "tries"}
# Sortable headers: the column and the sort its header asks for (ascending, descending).
SORTABLE = {
    "priority": ("urgent", "urgent"),
    "dos": ("dos", "-dos"),
    "tests": ("tests", "-tests"),
    "payer": ("payer", "-payer"),
    "age": ("oldest", "newest"),
    "due": ("due", "due"),
}


def coder_zone(request: Request) -> tzinfo:
    """The browser's time zone (cookie `tz`, set by app.js), UTC when unknown."""
    name = request.cookies.get("tz", "")
    if not name or len(name) > 64:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def working_list(request: Request, user: Any) -> tuple[QueueFilter, QueueSort] | None:
    """The list the coder is working: their saved queue filters and sort (None: none saved)."""
    saved = dict(user.preferences.get("queue", {})).get("filters")
    if not saved:
        return None
    try:
        return parse_filters(saved, user.username, coder_zone(request))
    except WorkflowError:
        return None


def _sort_links(params: Mapping[str, str], current: QueueSort) -> dict[str, dict[str, str]]:
    """For each sortable header: its link (same filters, that sort) and aria-sort state."""
    kept = {k: v for k, v in params.items() if k in FILTER_KEYS and k != "sort" and v}
    links: dict[str, dict[str, str]] = {}
    for column, (up, down) in SORTABLE.items():
        state = "none"
        target = up
        if current == up:
            state, target = "ascending", down
        elif current == down:
            state, target = "descending", up
        links[column] = {
            "href": "/queue?" + urlencode({**kept, "apply": "1", "sort": target}),
            "state": state,
        }
    return links


def parse_filters(
    params: Mapping[str, str], username: str, zone: tzinfo = UTC
) -> tuple[QueueFilter, QueueSort]:
    age = params.get("age", "").strip()
    if age and (not age.isdigit() or len(age) > 4):
        raise WorkflowError("age must be a whole number of days (at most 9999)")
    due = params.get("due", "")
    priority = params.get("priority", "")
    sort = params.get("sort", "") or QueueSort.URGENT
    assignee = params.get("assignee", "").strip()
    try:
        filters = QueueFilter(
            reason=params.get("reason", "").strip(),
            office=params.get("office", "").strip(),
            sender=params.get("sender", "").strip(),
            assignee=username if assignee == "mine" else assignee,
            status=params.get("status", "").strip(),
            min_age_days=int(age) if age else None,
            due=DueFilter(due) if due else None,
            search=params.get("q", "").strip()[:200],
            priority=PriorityFilter(priority) if priority else None,
            zone=zone,
        )
        return filters, QueueSort(sort)
    except ValueError as exc:
        raise WorkflowError(f"bad filter: {exc}") from exc


@router.get("/")
def home(user: CoderUser) -> Response:
    return RedirectResponse("/queue", status_code=303)


@router.get("/queue")
def queue_page(request: Request, user: CoderUser, session: SessionDep) -> Response:
    params: dict[str, str] = dict(request.query_params)
    saved: dict[str, Any] = dict(user.preferences.get("queue", {}))
    if "apply" in params:  # the filter form was used: remember it for this user
        saved = {
            "filters": {k: params.get(k, "") for k in FILTER_KEYS},
            "columns": [c for c in OPTIONAL_COLUMNS if params.get(f"col_{c}")],
        }
        user.preferences = {**user.preferences, "queue": saved}
        session.add(user)
        session.commit()
    elif not any(k in params for k in FILTER_KEYS):
        params.update(saved.get("filters", {}))
    filters, sort = parse_filters(params, user.username, coder_zone(request))
    size = params.get("limit", "") or "50"
    if size not in PAGE_SIZES and not (size.isdigit() and 1 <= int(size) <= 200):
        raise WorkflowError(f"rows per page: one of {', '.join(PAGE_SIZES)}")
    page = list_queue(
        session, filters, sort=sort, cursor=params.get("cursor") or None, limit=int(size)
    )
    # The rows show patients' names and MRNs: who saw which orders is audited.
    audit.record_view_of_list(
        session,
        user.username,
        [r.order_id for r in page.rows],
        via="web",
        filters=filters.as_dict(),
    )
    columns = saved.get("columns") or list(DEFAULT_COLUMNS)
    more = {k: v for k, v in params.items() if k in FILTER_KEYS and v}
    more_url = "/queue?" + urlencode({**more, "cursor": page.next_cursor or ""})
    context = {
        "page": page,
        "params": params,
        "columns": columns,
        "optional_columns": OPTIONAL_COLUMNS,
        "column_labels": COLUMN_LABELS,
        "sort_links": _sort_links(params, page.sort),
        "page_sizes": PAGE_SIZES,
        "done_message": DONE_MESSAGES.get(params.get("done", ""), ""),
        "claims": claim_report(session, params, user.username, coder_zone(request)),
        "released_meanwhile": release_note(session, params.get("order", ""))
        if params.get("done") in RELEASE_NOTES
        else None,
        "reasons": [str(c) for c in FindingCode],
        "mine_selected": params.get("assignee") == "mine",
        "more_url": more_url,
        "counts_url": "/queue/counts?"
        + urlencode({"assignee": params.get("assignee", ""), "due": params.get("due", "")}),
    }
    if request.headers.get("hx-request") and params.get("cursor"):
        return render(request, "partials/queue_rows.html", context)
    context["choices"] = _choices(request, session)
    return render(request, "queue.html", context)


@router.post("/queue/claim")
def claim_selected(
    request: Request,
    user: CoderUser,
    actor: CoderActor,
    session: SessionDep,
    queue: QueueDep,
    pick: Annotated[list[str], Form(max_length=200)] = [],  # noqa: B006 - FastAPI form default
    action_key: Annotated[str, Form(max_length=64)] = "",
    take_over: Annotated[bool, Form()] = False,
) -> Response:
    """Claim the ticked orders; each keeps its own row-version check. Orders another coder
    holds are skipped and named, unless the coder confirmed taking them over."""
    claimed, taken_over, changed, held = 0, 0, [], []
    for item in pick[:200]:
        order_id, _, version = item.partition(":")
        if not (order_id.isdigit() and version.isdigit()) or len(order_id + version) > 20:
            raise WorkflowError(f"bad selection {item!r}")
        try:
            result = queue.assign(
                actor,
                int(order_id),
                int(version),
                user.username,
                f"{action_key}:{order_id}",
                take_over=take_over,
            )
        except HeldByAnotherError:  # another coder's: asked about on the next page
            held.append(item)
            continue
        except WorkflowError:  # changed meanwhile, or no longer held
            changed.append(order_id)
            continue
        if not result.replayed:
            claimed += 1
            taken_over += result.note == TAKEN_OVER
    query = {"assignee": "mine", "apply": "1", "claimed": str(claimed), "picked": str(len(pick))}
    if taken_over:
        query["taken_over"] = str(taken_over)
    if changed:
        query["changed"] = ",".join(changed[:20])
    if held:
        query["held"] = ",".join(held[:50])
    return go_to(request, "/queue?" + urlencode(query))


@router.get("/queue/counts")
def queue_counts_fragment(request: Request, user: CoderUser, session: SessionDep) -> Response:
    """The count chips, loaded after the page (counting costs a pass over the queue)."""
    return render(
        request,
        "partials/queue_counts.html",
        {
            "counts": queue_counts(session, user.username, zone=coder_zone(request)),
            "assignee": request.query_params.get("assignee", ""),
            "due": request.query_params.get("due", ""),
        },
    )


CHOICES_TTL_SECONDS = 60.0


def _choices(request: Request, session: SessionDep) -> dict[str, list[str]]:
    """Drop-down values (senders, assignees in the queue), refreshed once a minute."""
    cached = getattr(request.app.state, "queue_choices", None)
    now = time.monotonic()
    if cached is None or now - cached[0] > CHOICES_TTL_SECONDS:
        cached = (now, filter_choices(session))
        request.app.state.queue_choices = cached
    choices: dict[str, list[str]] = cached[1]
    return choices
