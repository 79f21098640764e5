"""The `labintake` console script. Each command is thin: parse options, call a service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlmodel import Session

from labintake.codes.commands import codes_app
from labintake.config import Settings

if TYPE_CHECKING:
    from labintake.auth.roles import Role
    from labintake.models.users import User

app = typer.Typer(
    help="Laboratory order intake and code verification.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: readable value names (YYYY-MM-DD, N), no type tags
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
    from labintake.logs import configure_logging, redact_url

    settings = load_settings()
    configure_logging(settings)
    run_migrations(settings.database_url)
    typer.echo(f"database at head: {redact_url(settings.database_url)}")


@app.command()
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


@app.command()
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


@app.command()
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


users_app = typer.Typer(
    help="Users of the web screen and API.", no_args_is_help=True, rich_markup_mode=None
)
tokens_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")


def _read_password() -> str:
    """The password from a prompt (typed twice) or, when piped, the first line of stdin."""
    import sys

    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@contextmanager
def _accounts_session() -> Iterator[Session]:
    """A session on the configured database; a refused account change exits 1 with its reason."""
    from labintake.db import make_engine, session_scope
    from labintake.errors import NotFoundError, WorkflowError

    engine = make_engine(load_settings().database_url)
    try:
        with session_scope(engine) as session:
            yield session
    except (WorkflowError, NotFoundError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()


def _role(text: str) -> Role:
    from labintake.auth.roles import Role

    try:
        return Role(text)
    except ValueError:
        typer.secho(f"role must be one of: {', '.join(Role)}", fg="red", err=True)
        raise typer.Exit(2) from None


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="login name")],
    role: Annotated[
        str, typer.Option(metavar="coder|manager|admin", help="coder, manager or admin")
    ] = "coder",
    display_name: Annotated[str, typer.Option(metavar="NAME", help="name shown on screens")] = "",
) -> None:
    """Add a user; the password is read from stdin (piped) or prompted for twice."""
    from labintake.auth.accounts import create_user

    chosen = _role(role)
    password = _read_password()
    with _accounts_session() as session:
        create_user(session, name, chosen, password, display_name=display_name)
    typer.echo(f"user {name} added with role {chosen}")


@users_app.command("passwd")
def users_passwd(name: Annotated[str, typer.Argument(help="login name")]) -> None:
    """Set a user's password (stdin or prompt); lifts a lockout, ends sessions and tokens."""
    from labintake.auth.accounts import set_password

    password = _read_password()
    with _accounts_session() as session:
        set_password(session, _existing_user(session, name), password, actor="cli")
    typer.echo(f"password of {name} set; sessions and tokens ended")


def _existing_user(session: Session, name: str) -> User:
    from labintake.auth.accounts import find_user

    user = find_user(session, name)
    if user is None:
        typer.secho(f"error: no user {name!r}", fg="red", err=True)
        raise typer.Exit(1)
    return user


@users_app.command("role")
def users_role(
    name: Annotated[str, typer.Argument(help="login name")],
    role: Annotated[str, typer.Argument(help="coder, manager or admin")],
) -> None:
    """Give a user another role; the user's sessions and API tokens end."""
    from labintake.auth.accounts import set_role

    chosen = _role(role)
    with _accounts_session() as session:
        changed = set_role(session, _existing_user(session, name), chosen, actor="cli")
    typer.echo(
        f"user {name} now has role {chosen}; sessions and tokens ended"
        if changed
        else f"user {name} has role {chosen} already"
    )


@users_app.command("deactivate")
def users_deactivate(name: Annotated[str, typer.Argument(help="login name")]) -> None:
    """Stop a user signing in or using the API; the user's sessions and tokens end."""
    from labintake.auth.accounts import deactivate_user

    with _accounts_session() as session:
        changed = deactivate_user(session, _existing_user(session, name), actor="cli")
    typer.echo(
        f"user {name} deactivated; sessions and tokens ended"
        if changed
        else f"user {name} is inactive already"
    )


@users_app.command("reactivate")
def users_reactivate(name: Annotated[str, typer.Argument(help="login name")]) -> None:
    """Let a deactivated user sign in again (API tokens stay revoked: create new ones)."""
    from labintake.auth.accounts import reactivate_user

    with _accounts_session() as session:
        changed = reactivate_user(session, _existing_user(session, name), actor="cli")
    typer.echo(f"user {name} reactivated" if changed else f"user {name} is active already")


@tokens_app.command("create")
def tokens_create(name: Annotated[str, typer.Argument(help="the user the token acts as")]) -> None:
    """Print a new API bearer token for user NAME (shown once; only its hash is stored)."""
    from labintake.auth.tokens import create_token

    with _accounts_session() as session:
        token = create_token(session, name)
    typer.echo(token)


@tokens_app.command("revoke")
def tokens_revoke(
    prefix: Annotated[str, typer.Argument(help="the token's first 12 characters")],
) -> None:
    """Revoke an API token by its first 12 characters."""
    from labintake.auth.tokens import revoke_token

    with _accounts_session() as session:
        revoked = revoke_token(session, prefix[:12])
    if not revoked:
        typer.secho(f"error: no token starting {prefix[:12]!r}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {revoked} token(s)")
