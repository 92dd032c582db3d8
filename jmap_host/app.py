"""The HTTP app one listener serves: router, authentication, JMAP endpoints.

The router answers OPTIONS on every known path before authentication (CORS preflight),
405 with ``Allow`` for a method a path does not serve, 404 for unknown paths, and turns any
unexpected exception into a 500 problem document without a traceback (the traceback goes to
the log).  Middleware plugins wrap the whole thing (``asgi_wrapper``).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import trio

from . import blobs, eventsource, websocket
from .auth import Authenticator, AuthFailure
from .directory import DirectoryUnavailable
from .engine import execute, parse_request
from .errors import RequestError
from .http import (
    ASGIApp,
    BodyTooLarge,
    Message,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    json_response,
    problem_response,
)
from .limits import LimitExceeded
from .routes import Route
from .session import (
    API_PATH,
    DOWNLOAD_PATH,
    EVENTSOURCE_PATH,
    EVENTSOURCE_TOKEN_PATH,
    SESSION_PATH,
    UPLOAD_PATH,
    accounts_for,
    build_session,
)
from .store import StoreUnavailable
from .websocket import serve_websocket

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("jmap_host.http")

NO_STORE = ("Cache-Control", "no-cache, no-store, must-revalidate")


async def session_endpoint(request: Request) -> Response:
    """RFC 8620 §2: the Session object, never cached by HTTP caches."""
    assert request.principal is not None
    session = await build_session(request.host, request.principal, request.base_url)
    return json_response(session, headers=[NO_STORE])


async def api_endpoint(request: Request) -> Response:
    """RFC 8620 §3: one API request."""
    host = request.host
    principal = request.principal
    assert principal is not None
    limiter = host.api_concurrency
    try:
        with limiter.hold(principal.name):
            try:
                body = await request.body(limit=host.limits.max_size_request)
            except BodyTooLarge:
                raise RequestError(
                    "limit",
                    f"the request is larger than {host.limits.max_size_request} octets",
                    limit="maxSizeRequest",
                ) from None
            parsed = parse_request(body, request.header("content-type"), host)
            result = await execute(host, principal, parsed, request.base_url)
            return json_response(result, headers=[NO_STORE])
    except LimitExceeded:
        error = RequestError(
            "limit",
            f"at most {host.limits.max_concurrent_requests} API requests may run at once",
            status=429,
            limit="maxConcurrentRequests",
        )
        return problem_response(error.status, error.detail, error.type, **error.extra)
    except RequestError as error:
        return problem_response(error.status, error.detail, error.type, **error.extra)


async def well_known(request: Request) -> Response:
    return await session_endpoint(request)


HOME_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>jmap-host {version}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}
code{{background:#eee;padding:0 .2em}}</style></head>
<body>
<h1>jmap-host {version}</h1>
<p>This is a <a href="https://jmap.io/">JMAP</a> server (RFC 8620). It serves:
{capabilities}.</p>
<h2>Connect a client</h2>
<p>Give your JMAP client this server's address, <code>{base}</code>, or its session URL,
<code>{base}/.well-known/jmap</code>, and sign in with your user name and password (or an
app password). Clients find everything else in the session.</p>
<p>From a terminal: <code>curl -u USER {base}/.well-known/jmap</code></p>
</body>
</html>
"""


async def home(request: Request) -> Response:
    """``GET /``: a page for a person who opens the server's address in a browser, naming
    the server and version, the session URL and how to connect a client.  No login, and
    nothing about the users or their data: only what the session URL would tell anyone."""
    from html import escape

    from . import __version__

    names = [urn.rsplit(":", 1)[-1] if urn.startswith("urn:") else urn
             for urn in request.host.capabilities]  # fmt: skip
    page = HOME_PAGE.format(
        version=escape(__version__),
        base=escape(request.base_url),
        capabilities=", ".join(f"<code>{escape(n)}</code>" for n in names),
    )
    return Response(
        200,
        page.encode(),
        headers=[
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )


def host_routes() -> list[Route]:
    return [
        Route("/", home, ("GET",), auth=False, name="home page"),
        Route("/.well-known/jmap", well_known, ("GET",), name="session (well-known)"),
        Route(SESSION_PATH, session_endpoint, ("GET",), name="session"),
        Route(API_PATH, api_endpoint, ("POST",), name="api"),
        Route(UPLOAD_PATH, blobs.upload, ("POST",), name="upload"),
        Route(DOWNLOAD_PATH, blobs.download, ("GET",), name="download"),
        Route(
            EVENTSOURCE_PATH, eventsource.stream, ("GET",), name="eventsource", stream_token=True
        ),
        Route(EVENTSOURCE_TOKEN_PATH, eventsource.issue_token, ("POST",), name="eventsource token"),
        Route("/jmap/ws/token", websocket.issue_token, ("POST",), name="websocket token"),
    ]


class HostApp:
    """The ASGI app of one HTTP listener, before middleware."""

    def __init__(self, host: Host, listener: dict):
        self.host = host
        self.public_url: str | None = listener.get("url")
        self.routes = host_routes() + host.routes
        self.auth: Authenticator = host.authenticator

    def base_url(self, scope: Scope) -> str:
        if self.public_url:
            return self.public_url
        scheme = scope.get("scheme", "http")
        host_header = None
        for key, value in scope.get("headers", []):
            if key.lower() == b"host":
                host_header = bytes(value).decode("latin-1")
                break
        if not host_header:
            server = scope.get("server") or ("localhost", None)
            addr = f"[{server[0]}]" if ":" in str(server[0]) else str(server[0])
            host_header = f"{addr}:{server[1]}" if server[1] else addr
        return f"{scheme}://{host_header}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            # RFC 8887 at /jmap/ws (jmap_host.websocket); other paths are refused with 404.
            await serve_websocket(self.host, self.auth, self.base_url(scope), scope, receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"].upper()
        body = RequestBody(receive) if _has_body(scope) else None
        try:
            response = await self.dispatch(scope, body.receive if body else receive, method)
        except Exception:
            log.exception("unhandled error for %s %s", method, scope.get("path"))
            response = problem_response(500, "internal error; the server log has the details")
        try:
            await self._send(response, send, receive, method, body)
        except (trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError):
            # hypercorn closes the socket itself when the client's side of the exchange
            # breaks (a malformed body, a reset), without taking its send lock: a send of
            # ours at that moment meets the close.  The client is gone; nothing to answer.
            log.debug("connection closed while answering %s %s", method, scope.get("path"))

    async def _send(
        self,
        response: Response,
        send: Send,
        receive: Receive,
        method: str,
        body: RequestBody | None,
    ) -> None:
        limits = self.host.limits
        await response.send(
            send,
            head=method == "HEAD",
            receive=receive,
            closing=self.host.closing,
            before_end=(  # (only for an answer given before its body was read)
                partial(body.drain, max(limits.max_size_upload, limits.max_size_request))
                if body is not None and not body.done
                else None
            ),
        )

    async def dispatch(self, scope: Scope, receive: Receive, method: str) -> Response:
        path = scope["path"]
        matched = [
            (route, params) for route in self.routes if (params := route.match(path)) is not None
        ]
        if not matched:
            return problem_response(404, f"no resource at {path}")
        allowed = sorted({m for route, _ in matched for m in route.methods} | {"OPTIONS"})
        if "GET" in allowed:
            allowed = sorted(set(allowed) | {"HEAD"})
        if method == "OPTIONS":
            # Preflight is answered before authentication (CORS plugins add their headers).
            return Response(204, headers=[("Allow", ", ".join(allowed))])
        wanted = "GET" if method == "HEAD" else method
        found = next(((r, p) for r, p in matched if wanted in r.methods), None)
        if found is None:
            return problem_response(
                405, f"{method} is not allowed on {path}", headers=[("Allow", ", ".join(allowed))]
            )
        route, params = found
        request = Request(scope, receive, self.host, self.base_url(scope), path_params=params)
        if route.auth:
            try:
                token = (request.query.get("accessToken") or [None])[0]
                if route.stream_token and token and not request.header("authorization"):
                    request.principal = await self.auth.authenticate_stream_token(request, token)
                else:
                    request.principal = await self.auth.authenticate(request)
            except AuthFailure as failure:
                headers = list(self.auth.challenge(failure)) if failure.status == 401 else []
                if failure.retry_after is not None:
                    headers.append(("Retry-After", str(failure.retry_after)))
                return problem_response(failure.status, failure.detail, headers=headers)
        try:
            if request.principal is not None:
                accounts = await accounts_for(self.host, request.principal)
                await self.host.provision(accounts.values())
            return await route.handler(request)
        except (DirectoryUnavailable, StoreUnavailable):
            return problem_response(
                503, "a back end is unavailable; try again later", headers=[("Retry-After", "5")]
            )


def _has_body(scope: Scope) -> bool:
    for key, value in scope.get("headers", []):
        name = key.lower()
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


# How long an answer given before its request's body was read (a 429, 401, 404 or 413)
# waits for the rest of that body; see RequestBody.drain.
DRAIN_TIMEOUT = 30.0


class RequestBody:
    """The request body as the handler reads it, and what is left of it once it answered.

    A handler may answer before reading the body (a 429 for one upload too many is
    decided first, and must be: RFC 8620 §6.1 limits uploads, not their bytes).  Closing
    the connection then, with the client still sending, makes the kernel answer the
    client's next bytes with a reset, and a client that sends the whole body before it
    reads (most do) sees a broken connection instead of the answer.  So the rest is read
    and thrown away once the answer is sent and before it is ended (hypercorn closes
    the connection as soon as an answer ends with the body unread), up to the largest
    body the server would have taken and for DRAIN_TIMEOUT at most; a client sending
    more is cut off."""

    def __init__(self, receive: Receive):
        self._receive = receive
        self.done = False
        self.disconnected = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        if message["type"] == "http.disconnect":
            self.disconnected = True
        return message

    async def drain(self, limit: int) -> bool:
        """Read and drop what is left of the body (nothing once the handler read it).
        False when the connection went meanwhile (the client left, or sent a body h11
        refused): the answer must then not be ended, for hypercorn is closing the socket
        and a send now would race its close (trio's BusyResourceError, found by the
        fuzz test)."""
        read = 0
        with trio.move_on_after(DRAIN_TIMEOUT):
            while not self.done and read <= limit:
                read += len((await self.receive()).get("body", b""))
        return not self.disconnected


async def _lifespan(receive: Receive, send: Send) -> None:
    # Start-up and shut-down hooks run in the server (they span every listener), so the
    # per-listener lifespan protocol only needs acknowledging.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def build_app(host: Host, listener: dict) -> ASGIApp:
    """The listener's app wrapped by every active plugin's ``asgi_wrapper``."""
    from .plugins import call_for_each

    app: ASGIApp = HostApp(host, listener)
    for _plugin, wrapper in call_for_each(host.pm, "asgi_wrapper", host=host):
        app = wrapper(app)
    return app


__all__ = ["HostApp", "build_app", "host_routes"]
