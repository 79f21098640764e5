"""Pydantic models of the JSON API's responses: what the OpenAPI document says each route
answers (`GET /api/openapi.json`, copied to docs/openapi.json).

The routes still build plain dicts (the services' `*_json` functions); FastAPI validates each
answer against its model. Models forbid extra keys, so a field added to a dict without its
model (or the other way round) fails the API tests instead of drifting from the document.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


__all__ = ["ApiModel"]
