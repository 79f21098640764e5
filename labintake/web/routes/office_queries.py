"""A query to the ordering office: printable page and PDF."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from labintake import audit
from labintake.errors import NotFoundError
from labintake.models.orders import Order
from labintake.models.queue import OfficeQuery
from labintake.queue.office_query import stored_questions
from labintake.queue.query_letterhead import letterhead_for
from labintake.web.deps import CoderUser, RowId, SessionDep, SettingsDep
from labintake.web.rendering import render

router = APIRouter()


def _load(session: Session, order_id: int, query_id: int) -> tuple[Order, OfficeQuery]:
    query = session.get(OfficeQuery, query_id)
    order = session.get(Order, order_id)
    if query is None or order is None or query.order_id != order_id:
        raise NotFoundError(f"no query {query_id} on order {order_id}")
    return order, query


@router.get("/orders/{order_id}/queries/{query_id}")
def query_page(
    request: Request,
    order_id: RowId,
    query_id: RowId,
    user: CoderUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    order, query = _load(session, order_id, query_id)
    audit.record_view(session, user.username, "view_query", order_id=order_id, via="web")
    return render(
        request,
        "query.html",
        {
            "order": order,
            "query": query,
            "questions": stored_questions(query),
            "letterhead": letterhead_for(session, settings, query),
        },
    )


@router.get("/orders/{order_id}/queries/{query_id}/pdf")
def query_pdf(
    order_id: RowId, query_id: RowId, user: CoderUser, session: SessionDep, settings: SettingsDep
) -> Response:
    # The PDF library weighs about 30 MB once imported: only a process that serves a PDF
    # pays for it, not every listener.
    from labintake.queue.query_pdf import render_query_pdf

    order, query = _load(session, order_id, query_id)
    audit.record_view(session, user.username, "view_query_pdf", order_id=order_id, via="web")
    return Response(
        render_query_pdf(order, query, letterhead_for(session, settings, query)),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="query-{order_id}-{query_id}.pdf"'},
    )
