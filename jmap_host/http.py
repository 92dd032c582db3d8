"""The few HTTP pieces the host needs on top of raw ASGI: a request, a response, problems.

The host speaks ASGI directly (hypercorn gives it scopes) rather than through a web
framework: the surface is a handful of routes, and middleware plugins wrap plain ASGI apps.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
import trio

from .numbers import parse_digits

if TYPE_CHECKING:
    from .directory import Principal
    from .host import Host

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class BodyTooLarge(Exception):
    """The request body passed the limit given to :meth:`Request.body`."""


@dataclass
class Request:
    """One HTTP request as a route handler sees it."""

    scope: Scope
    receive: Receive
    host: Host
    base_url: str
    principal: Principal | None = None
    path_params: dict[str, str] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.scope.get("query_string", b"").decode("latin-1"))

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in self.scope.get("headers", []):
            if key.lower() == wanted:
                return bytes(value).decode("latin-1")
        return None

    @property
    def client_address(self) -> str:
        """The client's IP address: the peer's, or, behind a trusted reverse proxy with
        ``server.http.use-x-forwarded``, the one the proxy reports."""
        client = self.scope.get("client")
        peer = str(client[0]) if client else "unknown"
        trusted = getattr(self.host, "trusted_proxies", None)
        if not trusted or not _in_networks(peer, trusted):
            return peer
        forwarded = self.header("x-forwarded-for")
        if not forwarded:
            return peer
        # Walk from the nearest hop back; the first address not ours is the client.
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not _in_networks(hop, trusted):
                return hop
        return peer

    async def body(self, limit: int | None = None) -> bytes:
        """Read the whole body, refusing (before reading it all) one larger than ``limit``."""
        length = parse_digits(self.header("content-length"))
        if limit is not None and length is not None and length > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if limit is not None and size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


@dataclass
class Response:
    """A response: a body of bytes, or ``stream`` (an async iterator of chunks)."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: AsyncIterator[bytes] | None = None

    async def send(
        self,
        send: Send,
        *,
        head: bool = False,
        receive: Receive | None = None,
        closing: trio.Event | None = None,
        before_end: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Send the response.  A streamed one ends when the stream does, when the client
        disconnects (seen on ``receive``) or when ``closing`` is set (server shutdown), so a
        long-lived stream never outlives its client or holds up a graceful shutdown.
        ``before_end`` is awaited once everything but the end of the response is sent (the
        app reads what is left of the request body there: jmap_host.app.RequestBody); when
        it answers False the connection is gone and the response is left unended."""
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        if self.stream is None:
            headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        if head or self.stream is None:
            body = b"" if head else self.body
            if before_end is not None:
                await send({"type": "http.response.body", "body": body, "more_body": True})
                if not await before_end():
                    return
                body = b""
            await send({"type": "http.response.body", "body": body})
            return
        stream = self.stream
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                while receive is not None:
                    if (await receive())["type"] == "http.disconnect":
                        break
                else:
                    await trio.sleep_forever()
                nursery.cancel_scope.cancel()

            async def watch_closing() -> None:
                await (closing.wait() if closing is not None else trio.sleep_forever())
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_disconnect)
            nursery.start_soon(watch_closing)
            async for chunk in stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            nursery.cancel_scope.cancel()
        if before_end is not None and not await before_end():
            return
        await send({"type": "http.response.body", "body": b""})


def _in_networks(
    address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


# orjson writes NaN and ±Infinity as null instead of refusing them, and serialises a few
# types the stdlib refuses; the passthrough options send dataclasses, datetimes and
# subclasses of the JSON types to the stdlib encoder instead, so the output is the same.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def dumps(value: Any) -> bytes:
    """JSON as the host sends it: UTF-8, compact, never NaN (RFC 8620 §1.5, I-JSON).

    orjson when it can (responses are large: a 50-Email page is ~30 KB, 20x faster than the
    stdlib); the stdlib encoder with ``allow_nan=False`` for anything orjson refuses (int
    keys, integers beyond 64 bits, other types) and whenever the value holds a non-finite
    float (orjson would write ``null``), so errors and output match the stdlib's."""
    try:
        out = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        out = None
    if out is None or (b"null" in out and _has_nonfinite(value)):
        return json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()
    return out


def _has_nonfinite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def json_response(
    value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(
        status=status,
        body=dumps(value),
        headers=[("Content-Type", "application/json; charset=utf-8"), *(headers or [])],
    )


def problem_response(
    status: int,
    detail: str,
    type: str = "about:blank",
    headers: list[tuple[str, str]] | None = None,
    **extra: Any,
) -> Response:
    """An RFC 7807 problem document, as RFC 8620 §3.6.1 asks for request-level errors."""
    body = {
        "type": type,
        "status": status,
        "title": REASONS.get(status, ""),
        "detail": detail,
        **extra,
    }
    if type != "about:blank":
        body.pop("title")
    return Response(
        status=status,
        body=dumps(body),
        headers=[("Content-Type", "application/problem+json"), *(headers or [])],
    )
