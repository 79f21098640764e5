"""`labintake migrate` and `labintake serve`: the schema, and the service itself."""

from __future__ import annotations

from typing import Annotated

import typer

from labintake.cli.settings import load_settings


def migrate() -> None:
    """Bring the database schema to head (Alembic)."""
    from labintake.db import migrate as run_migrations
    from labintake.logs import configure_logging, redact_url

    settings = load_settings()
    configure_logging(settings)
    run_migrations(settings.database_url)
    typer.echo(f"database at head: {redact_url(settings.database_url)}")


def serve(
    demo: Annotated[
        bool,
        typer.Option(help="Demo users, sample code tables and a stub LIS when none is set."),
    ] = False,
) -> None:
    """Run the MLLP listener, with the web app and the background workers in child processes."""
    from labintake.config import ensure_demo_secret
    from labintake.runtime import run_service

    settings = load_settings(development=True if demo else None)
    if demo:
        ensure_demo_secret(settings)
    run_service(settings, demo=demo)
