"""``[jmap.http.cors]``: CORS for browser clients (webmail on another origin).

```toml
[jmap.http.cors]
allowed-origins = ["https://webmail.example.org", "https://*.example.net"]
allowed-methods = ["GET", "POST", "HEAD", "OPTIONS"]
allowed-headers = ["Authorization", "Content-Type", "Accept", "Last-Event-ID"]
exposed-headers = []
max-age = "1h"
allow-credentials = false
```

An origin on the list gets CORS headers (its own origin echoed, ``Vary: Origin``); a
preflight from it is answered here, before authentication.  An origin not on the list gets
no CORS headers at all, so the browser blocks the response.  ``"*"`` allows every origin.
"""

from __future__ import annotations

import re
from typing import Any

from jmap_host import (
    ASGIApp,
    Bool,
    Duration,
    Host,
    Invalid,
    Key,
    List,
    Receive,
    Scope,
    Send,
    Str,
    Table,
    hookimpl,
)

ORIGIN = re.compile(
    r"(https?)://(\*\.)?([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?"
)
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_origins(origins: list[str]) -> list[str]:
    for i, origin in enumerate(origins):
        if origin != "*" and not ORIGIN.fullmatch(origin):
            raise Invalid(
                f'item {i} ({origin!r}) is not an origin such as "https://app.example.org", '
                '"https://*.example.org" or "*" (no path, no trailing slash)'
            )
    return origins


def _check_tokens(values: list[str]) -> list[str]:
    for i, value in enumerate(values):
        if value != "*" and not TOKEN.fullmatch(value):
            raise Invalid(f"item {i} ({value!r}) is not a valid method or header name")
    return values


def _check_cors(table: dict[str, Any], key: str, ctx: Any) -> None:
    if table.get("allow-credentials") and "*" in table.get("allowed-origins", []):
        raise Invalid(
            'allow-credentials cannot be combined with the "*" origin (browsers refuse it)'
        )


CORS_TABLE = Table(
    [
        Key(
            "allowed-origins",
            List(Str()),
            default=[],
            check=_check_origins,
            doc='origins allowed: exact ("https://app.example.org"), wildcard subdomains '
            '("https://*.example.org") or "*"; empty disables CORS',
        ),
        Key(
            "allowed-methods",
            List(Str()),
            default=["GET", "POST", "HEAD", "OPTIONS"],
            check=_check_tokens,
            doc="Access-Control-Allow-Methods",
        ),
        Key(
            "allowed-headers",
            List(Str()),
            default=["Authorization", "Content-Type", "Accept", "Last-Event-ID"],
            check=_check_tokens,
            doc='Access-Control-Allow-Headers ("*" echoes what was asked)',
        ),
        Key(
            "exposed-headers",
            List(Str()),
            default=[],
            check=_check_tokens,
            doc="Access-Control-Expose-Headers",
        ),
        Key("max-age", Duration(), default=3600.0, doc="how long browsers may cache a preflight"),
        Key(
            "allow-credentials",
            Bool(),
            default=False,
            doc="send Access-Control-Allow-Credentials (cookies, TLS client certificates)",
        ),
    ],
    validate=_check_cors,
)


@hookimpl
def config_keys() -> list[tuple[str, Key]]:
    return [
        ("jmap.http", Key("cors", CORS_TABLE, default={}, doc="CORS policy for browser clients"))
    ]


class CorsPolicy:
    def __init__(self, config: dict[str, Any]):
        origins = config["allowed-origins"]
        self.any_origin = "*" in origins
        self.exact = {o.lower() for o in origins if "*" not in o}
        self.wildcards = []
        for o in origins:
            if "*." in o:
                scheme, rest = o.split("://*.", 1)
                self.wildcards.append(
                    re.compile(
                        re.escape(scheme)
                        + r"://([A-Za-z0-9-]+\.)+"
                        + re.escape(rest.lower())
                        + r"\Z",
                        re.I,
                    )
                )
        self.methods = ", ".join(config["allowed-methods"])
        self.headers = config["allowed-headers"]
        self.exposed = ", ".join(config["exposed-headers"])
        self.max_age = str(int(config["max-age"]))
        self.credentials = config["allow-credentials"]

    def allows(self, origin: str) -> bool:
        if self.any_origin:
            return True
        return origin.lower() in self.exact or any(w.match(origin) for w in self.wildcards)

    def common(self, origin: str) -> list[tuple[bytes, bytes]]:
        allow = "*" if self.any_origin and not self.credentials else origin
        out = [(b"access-control-allow-origin", allow.encode("latin-1"))]
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    def preflight(self, origin: str, requested_headers: str) -> list[tuple[bytes, bytes]]:
        if "*" in self.headers:
            # "*" never covers Authorization in browsers; echo what was asked instead.
            allow_headers = requested_headers or "*"
        else:
            allow_headers = ", ".join(self.headers)
        out = [
            *self.common(origin),
            (b"access-control-allow-methods", self.methods.encode("latin-1")),
            (b"access-control-max-age", self.max_age.encode()),
        ]
        if allow_headers:
            out.append((b"access-control-allow-headers", allow_headers.encode("latin-1")))
        return out


def with_vary_origin(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Add ``Origin`` to ``Vary`` (merging with one the app sent): the answer depends on
    the request's Origin, so a shared cache must not hand one origin's response to
    another (Fetch standard, "CORS protocol and HTTP caches")."""
    out, found = [], False
    for key, value in headers:
        if key.lower() == b"vary":
            found = True
            tokens = {t.strip().lower() for t in bytes(value).split(b",")}
            if b"origin" not in tokens and b"*" not in tokens:
                value = bytes(value) + b", Origin"
        out.append((key, value))
    return out if found else [*out, (b"vary", b"Origin")]


class CorsMiddleware:
    def __init__(self, app: ASGIApp, policy: CorsPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            bytes(k).lower(): bytes(v).decode("latin-1") for k, v in scope.get("headers", [])
        }
        origin = headers.get(b"origin")
        # With "*" and no credentials every origin gets the same answer; otherwise the
        # answer varies by Origin, even for requests from origins that get no CORS headers.
        dynamic = not (self.policy.any_origin and not self.policy.credentials)

        async def vary_only(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": with_vary_origin(message.get("headers", []))}
            await send(message)

        if origin is None or not self.policy.allows(origin):
            await self.app(scope, receive, vary_only if dynamic else send)
            return
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            response = self.policy.preflight(
                origin, headers.get(b"access-control-request-headers", "")
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [*with_vary_origin(response), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        extra = self.policy.common(origin)
        if self.policy.exposed:
            extra.append((b"access-control-expose-headers", self.policy.exposed.encode("latin-1")))
        names = {k for k, _ in extra}

        async def add(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                combined = kept + extra
                message = {
                    **message,
                    "headers": with_vary_origin(combined) if dynamic else combined,
                }
            await send(message)

        await self.app(scope, receive, add)


@hookimpl
def asgi_wrapper(host: Host) -> Any:
    config = host.config.get("jmap.http.cors") or {}
    if not config.get("allowed-origins"):
        return None
    policy = CorsPolicy(config)
    return lambda app: CorsMiddleware(app, policy)
