"""The sign-in gate: a throttled `POST /login` is answered 429 before the app sees it.

A sign-in flood is mostly attempts the rate limits refuse (`labintake.auth.throttle`). In
the route, each of those still cost a trip through FastAPI: a worker thread, the form parsed,
the login form's token checked, and the whole sign-in page rendered with a freshly signed
token (about 3 ms of CPU each, measured; CPU the web process then takes from the MLLP
listener on a small machine). This pure ASGI middleware, in front of everything but the
secure headers, answers them first:

- the client address over its window: refused without reading the body;
- otherwise, for a small form (``application/x-www-form-urlencoded``, at most
  MAX_PEEKED_BODY bytes), the body is read, the account name taken from it, and the account
  over its window is answered 429 too; the body is then handed on unchanged.

The answer is a short fixed page with ``Retry-After`` (no template, no session, no database,
no token), sent HOLD_SECONDS after the request came in: a flooding client that sends its
next attempt when the last is answered (most do) is slowed to one attempt a second per
connection, where an answer at once would have it send a few hundred a second, each costing
the web process, the kernel and the client CPU the listener shares. Holding costs no CPU (a
timer); at most MAX_HELD answers are held at once, so the held requests take at most that
many of uvicorn's 200 request slots, and beyond it the answer goes at once.

A refused attempt is counted as the route would have counted it; attempts that
pass are counted by the route (`SignInThrottle.admit`), so the limits, the login CSRF check,
the hashing slots and the lockout apply to them exactly as before. An address over its
limit is refused before its form token is looked at (429 where a stale form used to get
400).
"""

from __future__ import annotations

import asyncio
from html import escape
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labintake.auth.throttle import SignInThrottle
from labintake.errors import TooManyAttemptsError

__all__ = ["HOLD_SECONDS", "LOGIN_PATH", "MAX_HELD", "MAX_PEEKED_BODY", "SignInGateMiddleware"]

LOGIN_PATH = "/login"
# A sign-in form is a few hundred bytes; a larger body goes to the route unread here.
MAX_PEEKED_BODY = 4096
_FORM = b"application/x-www-form-urlencoded"
# How long a refusal is held before it is sent, and how many are held at once at most.
HOLD_SECONDS = 1.0
MAX_HELD = 50


class SignInGateMiddleware:
    """Refuses sign-ins from a throttled address or for a throttled account (see module)."""

    def __init__(
        self, app: ASGIApp, *, hold_seconds: float | None = None, max_held: int | None = None
    ) -> None:
        self.app = app
        self.hold_seconds = HOLD_SECONDS if hold_seconds is None else hold_seconds
        self.max_held = MAX_HELD if max_held is None else max_held
        self._held = 0  # only touched in the event loop's thread

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != LOGIN_PATH:
            await self.app(scope, receive, send)
            return
        # Read per request, so a test may give two apps one throttle.
        throttle: SignInThrottle = scope["app"].state.sign_in_throttle
        client = (scope["client"][0] if scope.get("client") else "")[:200]
        refused = throttle.refusal(client)
        if refused is None and _peekable(scope):
            body, complete = await _read_body(receive)
            username = _username(body) if complete else None
            if username is not None:
                refused = throttle.refusal(client, username)
            receive = _replay(body, complete, receive)
        if refused is None:
            await self.app(scope, receive, send)
            return
        if self._held < self.max_held:
            self._held += 1
            try:
                await asyncio.sleep(self.hold_seconds)
            finally:
                self._held -= 1
        await _too_many(refused, send)


def _peekable(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    length = headers.get(b"content-length", b"")
    return (
        headers.get(b"content-type", b"").split(b";")[0].strip() == _FORM
        and length.isdigit()
        and int(length) <= MAX_PEEKED_BODY
    )


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body read so far, and whether that is all of it: reading stops at the
    end, when the client goes away, or past MAX_PEEKED_BODY bytes."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_PEEKED_BODY:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
    return b"".join(chunks), False


def _username(body: bytes) -> str | None:
    """The form's account name as the route will read it; None for a form with too many
    fields (the route refuses it)."""
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:
        return None
    return fields.get("username", [""])[0]


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """`receive` with what was read of the body given back first (the rest, if any, and a
    disconnect, come from `receive` itself)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": not complete}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _too_many(refused: TooManyAttemptsError, send: Send) -> None:
    text = escape(str(refused).capitalize() + ".")
    body = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Too many sign-in attempts · labintake</title>"
        '<link rel="stylesheet" href="/static/app.css"></head>'
        f'<body><main><p class="alert alert-error" role="alert">{text}</p>'
        f'<p><a href="{LOGIN_PATH}">Back to sign-in</a></p></main></body></html>\n'
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(refused.retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
