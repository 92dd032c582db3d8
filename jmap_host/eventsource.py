"""The EventSource endpoint (RFC 8620 §7.3).

It validates ``types``, ``closeafter`` and ``ping``, holds a ``text/event-stream`` open and
sends ``ping`` events carrying ``interval``.  StateChange events come from the change log
and the push hub, which arrive with the data layer and push (issues 3 and 5); until a data
type exists there is no state to change.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import trio

from .http import Request, Response, problem_response

MIN_PING = 1  # §7.3 lets the server raise a too-low value; one second costs nothing here


async def stream(request: Request) -> Response:
    query = request.query
    closeafter = (query.get("closeafter") or ["no"])[0]
    if closeafter not in ("state", "no"):
        return problem_response(400, "closeafter must be 'state' or 'no'")
    ping_text = (query.get("ping") or ["0"])[0]
    if not ping_text.isdigit():
        return problem_response(400, "ping must be a non-negative integer")
    ping = int(ping_text)
    interval = max(ping, MIN_PING) if ping else 0

    async def events() -> AsyncIterator[bytes]:
        yield b": jmap-host event stream\n\n"
        while True:
            if not interval:
                await trio.sleep_forever()
            await trio.sleep(interval)
            yield b"event: ping\ndata: " + json.dumps({"interval": interval}).encode() + b"\n\n"

    return Response(
        200,
        headers=[
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache, no-store"),
            ("X-Accel-Buffering", "no"),
        ],
        stream=events(),
    )
