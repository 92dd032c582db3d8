"""JMAP over WebSocket (RFC 8887) at ``/jmap/ws``.

Handshake (§4.1, §4.2): the upgrade request is authenticated exactly like an HTTP request
(Basic or Bearer, the same :class:`~jmap_host.auth.Authenticator`, failed-login throttling
included) and must offer the ``jmap`` subprotocol.  A refused handshake is an HTTP response
with a problem document (ASGI's WebSocket denial-response extension, which hypercorn
implements): 400 without ``jmap``, 401 with ``WWW-Authenticate`` without valid credentials,
429 or 503 as for HTTP.  The credentials hold for the whole connection; the user is looked
up again for every request, and a user removed or disabled meanwhile gets the connection
closed with 1008 (Policy Violation, §4.2).

Messages (§4.3): text frames, each one JSON object of ``@type`` ``Request``,
``WebSocketPushEnable`` or ``WebSocketPushDisable``.  A ``Request`` is checked like an HTTP
API request (``maxSizeRequest`` per message, I-JSON, Request shape, ``using``,
``maxCallsInRequest``) and answered with a ``Response`` carrying ``requestId``; a
request-level error is a ``RequestError`` problem document (§4.3.4; ``requestId`` is null
when the request had no usable id).  A binary frame, a message that is not JSON or an
unknown ``@type`` is a ``RequestError`` too; the connection stays open.

Requests on one connection run concurrently (§4.3.2 lets responses come out of order;
match them by ``id``), up to ``maxConcurrentRequests`` per user counted together with the
user's HTTP API requests: one more is refused at once with a ``limit`` RequestError
(``maxConcurrentRequests``, status 429), not queued.  Push messages are handled in order
with the reading of the connection.

Push (§4.3.5): ``WebSocketPushEnable`` subscribes to the push hub for ``dataTypes`` (null:
every type) and replaces an earlier subscription; each StateChange carries a ``pushState``
that encodes every state the connection has seen (the same encoding as EventSource event
ids), so an enable with ``pushState`` is sent what changed since, at once (a ``pushState``
that cannot be decoded counts as having seen nothing: every current state is sent).
``WebSocketPushDisable`` ends the subscription.  A push pseudo-type a plugin declares
(``Capability.push_types``, e.g. ``CalendarAlert``) that ``dataTypes`` names, or null,
arrives as its own message: the object as published (its ``@type`` says what it is).

The connection ends when the client closes it, or with 1001 (Going Away) when the server
shuts down.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import trio

from . import streamtoken
from .auth import Authenticator, AuthFailure
from .directory import DirectoryUnavailable, Principal
from .engine import execute, parse_request
from .errors import RequestError
from .http import REASONS, Receive, Request, Response, Scope, Send, dumps, json_response
from .jsonparse import NotIJSON, loads
from .limits import LimitExceeded
from .push import StateMap, decode_event_id, diff, encode_event_id, state_change
from .session import accounts_for, push_scope
from .store import StoreUnavailable

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("jmap_host.websocket")

WEBSOCKET = "urn:ietf:params:jmap:websocket"
WEBSOCKET_PATH = "/jmap/ws"
SUBPROTOCOL = "jmap"

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
# A frame already begun is finished even when its sender is cancelled (a push disabled,
# the connection closing), so the stream stays well-formed; a client that reads nothing for
# this long loses the frame and the connection.
SEND_GRACE = 10.0


def websocket_url(base_url: str) -> str:
    """The WebSocket URL for a listener's base URL: http→ws, https→wss."""
    scheme, sep, rest = base_url.partition("://")
    ws_scheme = {"https": "wss", "http": "ws"}.get(scheme.lower(), scheme)
    return f"{ws_scheme}{sep}{rest}{WEBSOCKET_PATH}"


def websocket_capability(host: Host, base_url: str) -> dict[str, Any]:
    """The ``urn:ietf:params:jmap:websocket`` session object (RFC 8887 §3)."""
    return {"url": websocket_url(base_url), "supportsPush": True}


def is_websocket_path(path: str) -> bool:
    return path in (WEBSOCKET_PATH, WEBSOCKET_PATH + "/")


async def serve_websocket(
    host: Host,
    authenticator: Authenticator,
    base_url: str,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Serve one ASGI ``websocket`` scope: the handshake, then the connection."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    # The scope's scheme is ws or wss; URLs in responses (downloads, uploads) are HTTP ones.
    scheme, sep, rest = base_url.partition("://")
    base_url = {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme) + sep + rest
    path = scope.get("path", "")
    if not is_websocket_path(path):
        await _deny(scope, send, 404, f"no WebSocket endpoint at {path}")
        return
    if SUBPROTOCOL not in (scope.get("subprotocols") or []):
        await _deny(scope, send, 400, "the WebSocket handshake must offer the 'jmap' subprotocol")
        return
    request = Request(scope, receive, host, base_url)
    token = (request.query.get("accessToken") or [None])[0]
    origin = request.header("origin")
    if token is None and origin is not None and not _same_origin(origin, request):
        # A browser sends cached credentials with any page's handshake (cross-site
        # WebSocket hijacking): a page on another origin must bring a token it could only
        # get through a CORS-allowed, authenticated POST to /jmap/ws/token.
        await _deny(scope, send, 403, "a cross-origin WebSocket needs an accessToken")
        return
    try:
        if token is not None and not request.header("authorization"):
            principal = await authenticator.authenticate_stream_token(
                request, token, streamtoken.WEBSOCKET_SCOPE
            )
        else:
            principal = await authenticator.authenticate(request)
    except AuthFailure as failure:
        headers = list(authenticator.challenge(failure)) if failure.status == 401 else []
        if failure.retry_after is not None:
            headers.append(("Retry-After", str(failure.retry_after)))
        await _deny(scope, send, failure.status, failure.detail, headers)
        return
    try:
        await host.provision((await accounts_for(host, principal)).values())
    except (DirectoryUnavailable, StoreUnavailable):
        await _deny(
            scope, send, 503, "a back end is unavailable; try again later", [("Retry-After", "5")]
        )
        return
    await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
    await Connection(host, principal, base_url, send).run(receive)


def _same_origin(origin: str, request: Request) -> bool:
    """Is the page that opened the socket served from this very host and port?"""
    host = request.header("host") or ""
    parts = origin.split("://", 1)
    return len(parts) == 2 and parts[1].rstrip("/").lower() == host.lower()


async def issue_token(request: Request) -> Response:
    """POST /jmap/ws/token: a one-handshake token for a browser's WebSocket, to add to the
    WebSocket URL as ``?accessToken=...`` (browsers cannot send Authorization there)."""
    assert request.principal is not None
    data_dir = request.host.config.data["storage"]["path"]
    token, expires = await trio.to_thread.run_sync(
        lambda: streamtoken.issue(
            data_dir, request.principal.name, scope=streamtoken.WEBSOCKET_SCOPE
        )
    )
    return json_response(
        {"accessToken": token, "expiresIn": streamtoken.STREAM_TOKEN_SECONDS, "expires": expires},
        headers=[("Cache-Control", "no-store")],
    )


async def _deny(
    scope: Scope,
    send: Send,
    status: int,
    detail: str,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    """Refuse the handshake with an HTTP response when the server can send one."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})
        return
    problem = {"type": "about:blank", "status": status, "title": REASONS.get(status, "")}
    body = dumps({**problem, "detail": detail})
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers or []]
    raw += [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "websocket.http.response.start", "status": status, "headers": raw})
    await send({"type": "websocket.http.response.body", "body": body})


def request_error(error: RequestError, request_id: str | None) -> dict[str, Any]:
    """The RequestError message of RFC 8887 §4.3.4."""
    problem = error.problem()
    if error.type == "about:blank":
        problem["title"] = REASONS.get(error.status, "")
    return {"@type": "RequestError", "requestId": request_id, **problem}


class Connection:
    """One established JMAP WebSocket connection."""

    def __init__(self, host: Host, principal: Principal, base_url: str, send: Send):
        self.host = host
        self.principal = principal
        self.base_url = base_url
        self._send = send
        self._send_lock = trio.Lock()  # one frame at a time (permessage-deflate is stateful)
        self._push_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._closed = False

    async def run(self, receive: Receive) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_closing)
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message["type"] == "websocket.receive":
                    await self._handle(message)
            nursery.cancel_scope.cancel()

    async def _watch_closing(self) -> None:
        await self.host.closing.wait()
        await self.close(GOING_AWAY, "server shutting down")

    async def close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if not self._closed:
                self._closed = True
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def send_json(self, value: dict[str, Any]) -> None:
        text = dumps(value).decode("utf-8")
        async with self._send_lock:
            if self._closed:
                return
            with trio.CancelScope(shield=True, deadline=trio.current_time() + SEND_GRACE):
                await self._send({"type": "websocket.send", "text": text})

    async def send_error(self, error: RequestError, request_id: str | None = None) -> None:
        await self.send_json(request_error(error, request_id))

    # Incoming messages -------------------------------------------------------------------

    async def _handle(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            await self.send_error(
                RequestError("notJSON", "JMAP messages are UTF-8 text frames, not binary")
            )
            return
        body = text.encode("utf-8")
        limit = self.host.limits.max_size_request
        if len(body) > limit:
            await self.send_error(
                RequestError(
                    "limit", f"the message is larger than {limit} octets", limit="maxSizeRequest"
                )
            )
            return
        try:
            value = loads(body, self.host.limits.max_json_depth)
        except NotIJSON as exc:
            await self.send_error(RequestError("notJSON", f"the message is not I-JSON: {exc}"))
            return
        if not isinstance(value, dict):
            await self.send_error(RequestError("notRequest", "a message must be a JSON object"))
            return
        kind = value.get("@type")
        if kind == "Request":
            request_id = value.get("id")
            if request_id is not None and not isinstance(request_id, str):
                await self.send_error(RequestError("notRequest", "'id' must be a string"))
                return
            self._start_request(body, request_id)
        elif kind == "WebSocketPushEnable":
            await self._enable_push(value)
        elif kind == "WebSocketPushDisable":
            self._disable_push()
        else:
            await self.send_error(
                RequestError(
                    "notRequest",
                    f"unknown @type {kind!r}: expected Request, WebSocketPushEnable or "
                    "WebSocketPushDisable",
                )
            )

    # Requests ----------------------------------------------------------------------------

    def _start_request(self, body: bytes, request_id: str | None) -> None:
        assert self._nursery is not None
        hold = ExitStack()
        try:
            # Taken here, before the task starts, so a burst of messages cannot start more
            # tasks than the limit allows.
            hold.enter_context(self.host.api_concurrency.hold(self.principal.name))
        except LimitExceeded:
            error = RequestError(
                "limit",
                f"at most {self.host.limits.max_concurrent_requests} API requests may run at once",
                status=429,
                limit="maxConcurrentRequests",
            )
            self._nursery.start_soon(self.send_error, error, request_id)
            return
        self._nursery.start_soon(self._request, body, request_id, hold)

    async def _request(self, body: bytes, request_id: str | None, hold: ExitStack) -> None:
        with hold:
            try:
                response = await self._run(body)
            except RequestError as error:
                await self.send_error(error, request_id)
                return
            except (DirectoryUnavailable, StoreUnavailable):
                await self.send_error(
                    RequestError("about:blank", "a back end is unavailable; try again later", 503),
                    request_id,
                )
                return
            except Exception:
                log.exception("unhandled error in a WebSocket request")
                await self.send_error(
                    RequestError(
                        "about:blank", "internal error; the server log has the details", 500
                    ),
                    request_id,
                )
                return
            if response is None:
                return
            out: dict[str, Any] = {"@type": "Response", **response}
            if request_id is not None:
                out["requestId"] = request_id
            await self.send_json(out)

    async def _run(self, body: bytes) -> dict[str, Any] | None:
        host = self.host
        parsed = parse_request(body, "application/json", host)
        principal = await host.directory.principal(self.principal.name)
        if principal is None or principal.kind != "individual":
            await self.close(POLICY_VIOLATION, "the user is no longer allowed to log in")
            return None
        await host.provision((await accounts_for(host, principal)).values())
        return await execute(host, principal, parsed, self.base_url)

    # Push --------------------------------------------------------------------------------

    async def _enable_push(self, value: dict[str, Any]) -> None:
        data_types = value.get("dataTypes")
        push_state = value.get("pushState")
        if data_types is not None and (
            not isinstance(data_types, list) or not all(isinstance(t, str) for t in data_types)
        ):
            await self.send_error(
                RequestError("notRequest", "'dataTypes' must be an array of type names or null")
            )
            return
        if push_state is not None and not isinstance(push_state, str):
            await self.send_error(RequestError("notRequest", "'pushState' must be a string"))
            return
        self._disable_push()
        types = None if data_types is None else set(data_types)
        assert self._nursery is not None
        try:
            # Returns once subscribed (and missed changes are sent), so what the client sends
            # after the enable is handled after it.
            self._push_scope = await self._nursery.start(self._push, types, push_state)
        except (DirectoryUnavailable, StoreUnavailable):
            await self.send_error(
                RequestError(
                    "about:blank", "push could not be enabled: a back end is unavailable", 503
                )
            )

    def _disable_push(self) -> None:
        if self._push_scope is not None:
            self._push_scope.cancel()
            self._push_scope = None

    async def _push(
        self,
        types: set[str] | None,
        push_state: str | None,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        host = self.host
        with trio.CancelScope() as scope:
            accounts, only = await push_scope(host, self.principal)
            user = self.principal.name
            with host.push.subscribe(accounts, types, only, user) as subscriber:
                # Subscribe before reading the states, so no change falls between the two.
                seen: StateMap = await host.store.read(subscriber.current)
                if push_state is not None:
                    previous = decode_event_id(push_state) or {}
                    missed = diff({a: s for a, s in previous.items() if a in accounts}, seen)
                    if missed:
                        await self._push_change(missed, seen)
                task_status.started(scope)
                while True:
                    changed = diff(seen, await subscriber.wait())
                    for _type_name, obj in subscriber.take_objects():
                        await self.send_json(obj)
                    if not changed:
                        continue
                    for account, states in changed.items():
                        seen.setdefault(account, {}).update(states)
                    await self._push_change(changed, seen)

    async def _push_change(self, changed: StateMap, seen: StateMap) -> None:
        """A StateChange (RFC 8620 §7.1) with the pushState of RFC 8887 §4.3.5.1."""
        await self.send_json({**state_change(changed), "pushState": encode_event_id(seen)})
