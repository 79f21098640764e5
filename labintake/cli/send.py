"""`labintake send`: an MLLP client for files of HL7 messages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def send(
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True, dir_okay=False, readable=True, metavar="FILE", show_default=False
        ),
    ],
    host: Annotated[str, typer.Option(metavar="HOST", help="MLLP host")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="MLLP port")] = 2575,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds to wait for each ACK")
    ] = 30.0,
    tls: Annotated[bool, typer.Option(help="MLLP over TLS")] = False,
    tls_ca: Annotated[
        Path | None, typer.Option(metavar="PEM", help="CA file to verify the server (TLS)")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(metavar="PEM", help="Client certificate (TLS)")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(metavar="PEM", help="Client certificate key (TLS)")
    ] = None,
) -> None:
    """Send HL7 messages over MLLP (files may hold several messages or FHS/BHS batches)."""
    from labintake.mllp.client import client_tls_context, send_files

    context = None
    if tls or tls_ca or tls_cert:
        context = client_tls_context(tls_ca, tls_cert, tls_key)
    failures = send_files(
        files, host=host, port=port, timeout=timeout, echo=typer.echo, ssl_context=context
    )
    raise typer.Exit(1 if failures else 0)
