"""The EventSource endpoint (RFC 8620 §7.3).

``types`` (a comma-separated list or ``*``), ``closeafter`` (``state`` or ``no``) and
``ping`` (seconds; clamped to 1-300, never raised above 30 as §7.3 requires).  A ``state``
event carries a StateChange (§7.1) with an ``id`` that encodes every state the stream has
seen, so a client reconnecting with ``Last-Event-ID`` is sent what it missed at once.  A
``ping`` event carries ``interval`` and no id, and is sent whenever ``ping`` seconds pass
without an event.  A push pseudo-type a plugin declares (``Capability.push_types``, e.g.
``CalendarAlert``) that ``types`` names, or ``*``, arrives as an event of its declared name
(``calendarAlert``) with the object as data and no id (it is not state: a reconnecting
client is not sent it again); ``closeafter=state`` does not close on it.
``X-Accel-Buffering: no`` keeps nginx from buffering the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import trio

from . import streamtoken
from .http import Request, Response, json_response, problem_response
from .numbers import parse_digits
from .push import PushObject, StateMap, decode_event_id, diff, encode_event_id, state_change
from .session import push_scope

MIN_PING = 1
MAX_PING = 300
TYPE_NAME = r"[A-Za-z][A-Za-z0-9]*"


def _event(name: str, data: object, event_id: str | None = None) -> bytes:
    # orjson: the same compact JSON (the values are strings and dicts of strings), several
    # times faster; one event is encoded per stream per change, 10,000 times per change
    # with 10,000 streams open.
    head = f"event: {name}\nid: {event_id}\n" if event_id is not None else f"event: {name}\n"
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def issue_token(request: Request) -> Response:
    """POST /jmap/eventsource/token: a stream-only token for a browser's EventSource, to
    add to the event-source URL as ``&accessToken=...`` (see jmap_host/streamtoken.py)."""
    assert request.principal is not None
    data_dir = request.host.config.data["storage"]["path"]
    token, expires = await trio.to_thread.run_sync(
        streamtoken.issue, data_dir, request.principal.name
    )
    return json_response(
        {"accessToken": token, "expiresIn": streamtoken.STREAM_TOKEN_SECONDS, "expires": expires},
        headers=[("Cache-Control", "no-store")],
    )


async def stream(request: Request) -> Response:
    """RFC 8620 §7.3: a text/event-stream of StateChange events."""
    assert request.principal is not None
    host = request.host
    query = request.query
    closeafter = (query.get("closeafter") or ["no"])[0]
    if closeafter not in ("state", "no"):
        return problem_response(400, "closeafter must be 'state' or 'no'")
    ping_text = (query.get("ping") or ["0"])[0]
    ping = parse_digits(ping_text, max_digits=9)
    if ping is None:
        return problem_response(400, "ping must be a non-negative integer")
    interval = min(max(ping, MIN_PING), MAX_PING) if ping else 0
    types_text = (query.get("types") or ["*"])[0]
    types: set[str] | None = None
    if types_text != "*":
        types = {t.strip() for t in types_text.split(",") if t.strip()}
        if not types:
            return problem_response(400, "types must be '*' or a comma-separated list")
    accounts, only = await push_scope(host, request.principal)
    user = request.principal.name
    last_id = request.header("last-event-id")
    previous = decode_event_id(last_id) if last_id else None

    async def events() -> AsyncIterator[bytes]:
        events_for = host.push_types
        with host.push.subscribe(accounts, types, only, user) as subscriber:
            # Subscribe before reading the states, so no change falls between the two.
            seen: StateMap = await host.store.read(subscriber.current)
            yield b": jmap-host event stream\n\n"
            if previous is not None:
                missed = diff({a: s for a, s in previous.items() if a in accounts}, seen)
                if missed:
                    yield _event("state", state_change(missed), encode_event_id(seen))
                    if closeafter == "state":
                        return
            while True:
                changed: StateMap = {}
                objects: list[PushObject] = []
                with trio.move_on_after(interval if interval else float("inf")):
                    changed = diff(seen, await subscriber.wait())
                    objects = subscriber.take_objects()
                for type_name, obj in objects:
                    yield _event(events_for[type_name], obj)
                if objects and not changed:
                    continue
                if not changed:
                    if interval:
                        yield _event("ping", {"interval": interval})
                    continue
                for account, states in changed.items():
                    seen.setdefault(account, {}).update(states)
                yield _event("state", state_change(changed), encode_event_id(seen))
                if closeafter == "state":
                    return

    return Response(
        200,
        headers=[
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache, no-store"),
            ("X-Accel-Buffering", "no"),
        ],
        stream=events(),
    )
