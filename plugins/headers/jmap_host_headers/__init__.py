"""``jmap.http.headers``: headers added to every HTTP response.

```toml
[jmap.http]
headers = ["Cache-Control: max-age=3600", "Server: Stalwart JMAP"]
```

A configured header replaces a header of the same name the host would have sent, because
the operator asked for it explicitly.  A header with CR or LF, an invalid name or no colon
is a config error at load, never a broken response.

Browsers never let ``Access-Control-Allow-Headers: *`` cover ``Authorization`` (the Fetch
standard), and every JMAP request carries it; so on a preflight that asks for headers,
a configured ``*`` is followed by the headers the browser asked for, and the permissive
recipe in the docs works as operators expect it to.
"""

from __future__ import annotations

import re
from typing import Any

from jmap_host import ASGIApp, Host, Invalid, Key, List, Receive, Scope, Send, Str, hookimpl

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_headers(values: list[str]) -> list[tuple[str, str]]:
    """``["Name: value", ...]`` → [(name, value)]; raises :class:`Invalid` naming the item."""
    out = []
    for i, item in enumerate(values):
        if "\r" in item or "\n" in item or "\x00" in item:
            raise Invalid(f"item {i} ({item!r}) contains CR, LF or NUL")
        name, sep, value = item.partition(":")
        if not sep:
            raise Invalid(f'item {i} ({item!r}) has no colon; write "Name: value"')
        name, value = name.strip(), value.strip()
        if not TOKEN.fullmatch(name):
            raise Invalid(f"item {i} ({item!r}): {name!r} is not a valid header name")
        if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
            raise Invalid(f"item {i} ({item!r}) has control characters in its value")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise Invalid(f"item {i} ({item!r}): header values must be ISO-8859-1") from None
        out.append((name, value))
    return out


@hookimpl
def config_keys() -> list[tuple[str, Key]]:
    return [
        (
            "jmap.http",
            Key(
                "headers",
                List(Str()),
                default=[],
                doc='headers added to every response, as "Name: value"',
                check=parse_headers,
            ),
        )
    ]


class HeadersMiddleware:
    def __init__(self, app: ASGIApp, headers: list[tuple[str, str]]):
        self.app = app
        self.headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        self.names = {n for n, _ in self.headers}
        self.star_allow_headers = (b"access-control-allow-headers", b"*") in self.headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        requested = b""
        if self.star_allow_headers and scope["method"] == "OPTIONS":
            for key, value in scope.get("headers", []):
                if key.lower() == b"access-control-request-headers":
                    requested = bytes(value)

        async def add_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in self.names
                ]
                extra = list(self.headers)
                if requested:
                    extra = [
                        (k, b"*, " + requested if k == b"access-control-allow-headers" else v)
                        for k, v in extra
                    ]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, add_headers)


@hookimpl
def asgi_wrapper(host: Host) -> Any:
    headers = host.config.get("jmap.http.headers") or []
    if not headers:
        return None
    return lambda app: HeadersMiddleware(app, headers)
