"""`labintake migrate` and `labintake serve`: the schema, and the service itself."""

from __future__ import annotations

from typing import Annotated

import typer

from labintake.cli.settings import load_settings

# sysexits.h EX_TEMPFAIL: the database could not be reached, so trying again later may work.
# The container entrypoint retries this exit status only; any other failure (a broken install,
# a migration that fails) stops at once.
DATABASE_UNREACHABLE = 75


def migrate() -> None:
    """Bring the database schema to head (Alembic)."""
    from sqlalchemy.exc import OperationalError

    from labintake.db import migrate as run_migrations
    from labintake.logs import configure_logging, redact_url

    settings = load_settings()
    configure_logging(settings)
    where = redact_url(settings.database_url)
    try:
        run_migrations(settings.database_url)
    except OperationalError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        typer.echo(f"cannot reach the database at {where}: {reason}", err=True)
        raise typer.Exit(DATABASE_UNREACHABLE) from None
    typer.echo(f"database at head: {where}")


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
