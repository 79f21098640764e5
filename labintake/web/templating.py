"""Jinja2 templates with autoescaping on for everything; message data is never marked safe."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from labintake.finding_labels import finding_label

TEMPLATES_DIR = Path(__file__).parent / "templates"


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _when(value: datetime | None) -> Markup:
    """A timestamp: stored UTC, shown in the reader's local time by app.js (UTC without JS)."""
    if value is None:
        return Markup("")
    utc = value.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(utc.isoformat(), _utc_text(utc))


def _day(value: date | None) -> str:
    return value.isoformat() if value is not None else ""


def _span(value: timedelta | None) -> str:
    """A short human duration: 3d 4h, 5h 10m, 12m (negative spans get a minus sign)."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    return f"{sign}{minutes}m"


_HIDDEN_KEYS = {"action_key", "via", "tests", "table_versions", "verification_id"}


def _value(value: Any) -> str:
    if isinstance(value, str):
        try:
            return _utc_text(datetime.fromisoformat(value)) if "T" in value else value
        except ValueError:
            return value
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) or "none"
    return "" if value is None else str(value)


def _changes(detail: dict[str, Any]) -> str:
    """An event's detail in a line: what changed (before -> after), then the rest."""
    raw_before, raw_after = detail.get("before"), detail.get("after")
    before: dict[str, Any] = raw_before if isinstance(raw_before, dict) else {}
    after: dict[str, Any] = raw_after if isinstance(raw_after, dict) else {}
    parts = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if key in before and old != new:
            parts.append(f"{key}: {_value(old)} → {_value(new)}")
        elif key not in before and new not in (None, "", []):
            parts.append(f"{key}: {_value(new)}")
    if "status_before" in detail and detail.get("status_before") != detail.get("status_after"):
        parts.append(f"status: {detail['status_before']} → {detail.get('status_after')}")
    for key, value in detail.items():
        if key in ("before", "after", "status_before", "status_after") or key in _HIDDEN_KEYS:
            continue
        if value not in (None, "", [], {}):
            parts.append(f"{key}: {_value(value)}")
    return "; ".join(parts)


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["when_text"] = lambda value: _utc_text(value) if value is not None else ""
    env.filters["day"] = _day
    env.filters["span"] = _span
    env.filters["changes"] = _changes
    env.filters["reason_label"] = finding_label
    return Jinja2Templates(env=env)
