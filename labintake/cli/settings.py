"""Settings for a command: the environment plus command-line overrides, or a clear error."""

from __future__ import annotations

import typer

from labintake.config import Settings


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with command-line overrides; clear error when invalid."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        messages = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        typer.secho(f"configuration error: {messages}", fg="red", err=True)
        raise typer.Exit(2) from exc
