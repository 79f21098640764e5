"""Rendering pages: every template gets the signed-in user, the CSRF token and a form key."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from labintake.auth.roles import Role


def sentence(text: str) -> str:
    """A refusal shown to a person, as a sentence: capital first letter, full stop at the end."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    principal = getattr(request.state, "principal", None)
    base: dict[str, Any] = {
        "user": principal.user if principal else None,
        "is_manager": bool(principal and principal.role.allows(Role.MANAGER)),
        "is_admin": bool(principal and principal.role.allows(Role.ADMIN)),
        "csrf_token": principal.web_session.csrf_token
        if principal and principal.web_session
        else "",
        "new_key": lambda: uuid.uuid4().hex,
    }
    response: Response = request.app.state.templates.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )
    return response
