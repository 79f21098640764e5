"""`labintake users ...` and `labintake tokens ...`: accounts of the web screen and API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from sqlmodel import Session

from labintake.cli.settings import load_settings

if TYPE_CHECKING:
    from labintake.auth.roles import Role
    from labintake.models.users import User

users_app = typer.Typer(
    help="Users of the web screen and API.", no_args_is_help=True, rich_markup_mode=None
)
tokens_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True, rich_markup_mode=None)


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


@users_app.command("phone")
def users_phone(
    name: Annotated[str, typer.Argument(help="login name")],
    phone: Annotated[str, typer.Argument(metavar="NUMBER", help="direct line; '' clears it")],
) -> None:
    """Set the direct line printed on the office queries a user writes."""
    from labintake.auth.accounts import set_phone

    with _accounts_session() as session:
        changed = set_phone(session, _existing_user(session, name), phone, actor="cli")
    shown = " ".join(phone.split()) or "(none: the lab's phone is printed)"
    typer.echo(
        f"direct line of {name}: {shown}" if changed else f"user {name} has that line already"
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
def tokens_create(
    name: Annotated[str, typer.Argument(help="the user the token acts as")],
    label: Annotated[
        str, typer.Option("--name", metavar="TEXT", help="what the token is for, shown in lists")
    ] = "",
) -> None:
    """Print a new API bearer token for user NAME (shown once; only its hash is stored)."""
    from labintake.auth.tokens import create_token

    with _accounts_session() as session:
        token = create_token(session, name, label)
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
