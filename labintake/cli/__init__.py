"""The `labintake` console script: one module per command group, each command thin (parse
options, call a service).

- :mod:`labintake.cli.service`   `migrate`, `serve`
- :mod:`labintake.cli.send`      `send` (MLLP client)
- :mod:`labintake.cli.replay`    `replay`
- :mod:`labintake.cli.users`     `users ...`, `tokens ...`
- :mod:`labintake.cli.codes`     `codes ...`
- :mod:`labintake.cli.settings`  settings from the environment, with a clear error

Heavy imports happen inside each command, so `labintake --help` stays quick.
"""

from __future__ import annotations

import typer

from labintake.cli.codes import codes_app
from labintake.cli.replay import replay
from labintake.cli.send import send
from labintake.cli.service import migrate, serve
from labintake.cli.settings import load_settings
from labintake.cli.users import tokens_app, users_app

__all__ = ["app", "load_settings"]

app = typer.Typer(
    help="Laboratory order intake and code verification.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: readable value names (YYYY-MM-DD, N), no type tags
)
app.command()(migrate)
app.command()(serve)
app.command()(send)
app.command()(replay)
app.add_typer(codes_app, name="codes")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
