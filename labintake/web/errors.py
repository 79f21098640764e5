"""The one place where labintake's exceptions become HTTP answers.

NotAuthenticatedError  401 (API) / redirect to the login page (screens)
PermissionDeniedError  403
PasswordChangeRequiredError  redirect to the password page (screens) / 403 (API)
NotFoundError          404
TooManyAttemptsError   429, with Retry-After
BusyError              503, with Retry-After
IdempotencyKeyReusedError 422
ConcurrentChangeError  409, with the order's fresh state
WorkflowError          409
CodeTableError         503
HL7Error               422
DataError (database)   422: a value the database cannot hold (a NUL character, say)
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import DataError

from labintake.errors import (
    BusyError,
    CodeTableError,
    ConcurrentChangeError,
    HL7Error,
    IdempotencyKeyReusedError,
    LabintakeError,
    NotAuthenticatedError,
    NotFoundError,
    PasswordChangeRequiredError,
    PermissionDeniedError,
    TooManyAttemptsError,
    WorkflowError,
)


def status_for(exc: LabintakeError) -> int:
    if isinstance(exc, NotAuthenticatedError):
        return 401
    if isinstance(exc, PermissionDeniedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, TooManyAttemptsError):
        return 429
    if isinstance(exc, BusyError):
        return 503
    if isinstance(exc, WorkflowError):  # ConcurrentChangeError included
        return 409
    if isinstance(exc, CodeTableError):
        return 503
    if isinstance(exc, HL7Error | IdempotencyKeyReusedError):
        return 422
    return 500


def retry_after(exc: LabintakeError) -> dict[str, str]:
    """The Retry-After header for a refusal that passes with time, else none."""
    if isinstance(exc, TooManyAttemptsError | BusyError):
        return {"Retry-After": str(exc.retry_after)}
    return {}


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get(
        "accept", ""
    )


_ELEMENT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def field_target(request: Request, exc: LabintakeError) -> str | None:
    """Where an error about one form field goes: beside that field, in the form that sent it
    (HTMX names the form in `HX-Trigger`); None when the error is not about one field."""
    field = getattr(exc, "field", "")
    trigger = request.headers.get("hx-trigger", "")
    if not field or not _ELEMENT_ID.match(trigger) or not _ELEMENT_ID.match(field):
        return None
    return f'#{trigger} [data-error-for="{field}"]'


def install_error_handlers(app: FastAPI, templates: Jinja2Templates) -> None:
    def flash(request: Request, status: int, kind: str, detail: str) -> Response:
        """The error shown in place on an HTMX request (its status notwithstanding)."""
        response = templates.TemplateResponse(
            request,
            "partials/error.html",
            {"status": status, "kind": kind, "detail": detail, "stale": status == 409},
            status_code=status,
        )
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        return response

    async def on_labintake_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LabintakeError)
        status = status_for(exc)
        kind = type(exc).__name__
        if wants_json(request):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else retry_after(exc)
            body: dict[str, object] = {"error": kind, "detail": str(exc)}
            if getattr(exc, "field", ""):
                body["field"] = getattr(exc, "field", "")
            if isinstance(exc, ConcurrentChangeError) and exc.order_id is not None:
                body["order_id"] = exc.order_id
                body["current_row_version"] = exc.current_row_version
            return JSONResponse(body, status_code=status, headers=headers)
        if status == 401:
            if request.headers.get("hx-request"):
                return Response(status_code=401, headers={"HX-Redirect": "/login"})
            # Back to the page after signing in; a form post cannot be replayed by a redirect.
            target = (
                request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method == "GET"
                else "/"
            )
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        if isinstance(exc, PasswordChangeRequiredError):
            if request.headers.get("hx-request"):
                return Response(status_code=200, headers={"HX-Redirect": "/account/password"})
            return RedirectResponse("/account/password", status_code=303)
        if isinstance(exc, ConcurrentChangeError) and exc.order_id is not None:
            # Show the fresh state with a clear banner instead of a bare error.
            url = f"/orders/{exc.order_id}?stale=1"
            if request.headers.get("hx-request"):
                return Response(status_code=200, headers={"HX-Redirect": url})
            return RedirectResponse(url, status_code=303)
        if request.headers.get("hx-request"):
            beside = field_target(request, exc)
            if beside is not None:
                response = templates.TemplateResponse(
                    request, "partials/field_error.html", {"detail": str(exc)}, status_code=status
                )
                response.headers["HX-Retarget"] = beside
                response.headers["HX-Reswap"] = "innerHTML"
                return response
            return flash(request, status, kind, str(exc))
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": status, "kind": kind, "detail": str(exc), "stale": status == 409},
            status_code=status,
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        if wants_json(request) or not request.headers.get("hx-request"):
            return JSONResponse({"error": "ValidationError", "detail": errors}, status_code=422)
        text = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
        return flash(request, 422, "ValidationError", text)

    async def on_data_error(request: Request, exc: Exception) -> Response:
        # PostgreSQL refuses NUL characters (and SQLite does not): same answer on both.
        detail = "a value could not be used: text may not contain NUL or other invalid bytes"
        if wants_json(request) or not request.headers.get("hx-request"):
            return JSONResponse({"error": "InvalidValue", "detail": detail}, status_code=422)
        return flash(request, 422, "InvalidValue", detail)

    app.add_exception_handler(LabintakeError, on_labintake_error)
    app.add_exception_handler(DataError, on_data_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
