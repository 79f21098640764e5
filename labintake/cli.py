"""The `labintake` console script. Each command is thin: parse options, call a service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labintake.codes.commands import codes_app
from labintake.config import Settings

app = typer.Typer(
    help="Laboratory order intake and code verification.",
    no_args_is_help=True,
    add_completion=False,
)

app.add_typer(codes_app, name="codes")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with command-line overrides; clear error when invalid."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        messages = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        typer.secho(f"configuration error: {messages}", fg="red", err=True)
        raise typer.Exit(2) from exc


@app.command()
def migrate() -> None:
    """Bring the database schema to head (Alembic)."""
    from labintake.db import migrate as run_migrations

    settings = load_settings()
    run_migrations(settings.database_url)
    typer.echo(f"database at head: {settings.database_url.split('@')[-1]}")


@app.command()
def serve(
    demo: Annotated[
        bool,
        typer.Option(help="Demo users, sample code tables and a stub LIS when none is set."),
    ] = False,
) -> None:
    """Run the MLLP listener, the web app and the scheduled jobs in one process."""
    from labintake.runtime import run_service

    settings = load_settings(development=True if demo else None)
    run_service(settings, demo=demo)


@app.command()
def send(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    host: Annotated[str, typer.Option(help="MLLP host")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MLLP port")] = 2575,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each ACK")] = 30.0,
) -> None:
    """Send HL7 messages over MLLP (files may hold several messages or FHS/BHS batches)."""
    from labintake.mllp.client import send_files

    failures = send_files(files, host=host, port=port, timeout=timeout, echo=typer.echo)
    raise typer.Exit(1 if failures else 0)
