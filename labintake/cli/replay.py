"""`labintake replay`: verify stored orders again against the code tables."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from labintake.cli.settings import load_settings


def replay(
    since: Annotated[
        datetime,
        typer.Option(
            formats=["%Y-%m-%d"],
            metavar="YYYY-MM-DD",
            help="Orders with a date of service from this day",
        ),
    ],
    tables: Annotated[
        str | None,
        typer.Option(
            metavar="VERSION", help="A table version to use for every order (e.g. icd10cm-2025-04)"
        ),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the new verifications (default: report only)")
    ] = False,
) -> None:
    """Verify stored orders again against the code tables; report what would change."""
    from labintake.verification.replay import run_replay_command

    raise typer.Exit(run_replay_command(load_settings(), since.date(), tables, apply, typer.echo))
