"""The OpenAPI document of the JSON API: `/api/...`, `/healthz` and `/metrics`.

The web screens (HTML pages and their forms) are left out: the document describes what a
script may call. It is served at `GET /api/openapi.json` to any signed-in user or API token
(as the rest of the API), and a copy is kept in the repository at docs/openapi.json
(:mod:`labintake.web.openapi_copy` writes and checks it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from labintake.web.schemas.errors import ApiError, ValidationFailure

API_PATHS = ("/api/", "/healthz", "/metrics")
_REF_PREFIX = "#/components/schemas/"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF_PREFIX):
                yield value.removeprefix(_REF_PREFIX)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def api_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with only the API's paths, and the schemas they use."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    document["paths"] = {
        path: item for path, item in document["paths"].items() if path.startswith(API_PATHS)
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            _error_answers(path, method, operation)
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    used: set[str] = set()
    pending = list(_refs(document["paths"]))
    while pending:
        name = pending.pop()
        if name not in used and name in schemas:
            used.add(name)
            pending.extend(_refs(schemas[name]))
    document.setdefault("components", {})["schemas"] = {
        **{k: v for k, v in schemas.items() if k in used},
        **_error_schemas(),
    }
    return document


def _error_schemas() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for model in (ApiError, ValidationFailure):
        schema = model.model_json_schema(ref_template=_REF_PREFIX + "{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def _answer(model: type[ApiError | ValidationFailure], description: str) -> dict[str, Any]:
    ref = {"$ref": _REF_PREFIX + model.__name__}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _error_answers(path: str, method: str, operation: dict[str, Any]) -> None:
    """The error answers each API operation can give (see labintake.web.errors)."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if path.startswith("/api/"):
        responses["401"] = _answer(ApiError, "not signed in, or an unknown or revoked token")
        responses["403"] = _answer(ApiError, "the role is not enough for this")
    if "{" in path:
        responses["404"] = _answer(ApiError, "no such row")
    if method == "post" and path.startswith("/api/orders/"):
        responses["409"] = _answer(
            ApiError, "the order changed meanwhile, or the action does not fit its status"
        )
    if "422" in responses:
        responses["422"] = _answer(ValidationFailure, "the request does not fit")


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return :func:`api_document` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = api_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
