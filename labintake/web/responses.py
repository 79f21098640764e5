"""What a screen action answers: go to the next page (HTMX redirect or a plain 303)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response


def go_to(request: Request, url: str) -> Response:
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
