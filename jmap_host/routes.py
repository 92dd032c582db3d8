"""Extra HTTP routes and listener protocols that plugins add."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .host import Host
    from .http import Request, Response


RouteHandler = Callable[["Request"], Awaitable["Response"]]


@dataclass
class Route:
    """An HTTP route.

    ``path`` is a pattern whose ``{name}`` parts match one path segment and arrive in
    ``request.path_params``.  ``methods`` lists the HTTP methods served (HEAD is served
    wherever GET is; OPTIONS is answered by the host for CORS preflight).  With ``auth``
    true (the default) the host authenticates first and sets ``request.principal``.
    """

    path: str
    handler: RouteHandler
    methods: tuple[str, ...] = ("GET",)
    auth: bool = True
    name: str = ""
    # Also accept a stream token (``accessToken`` query parameter) instead of credentials:
    # only for the EventSource endpoint, whose clients are browsers (see streamtoken.py).
    stream_token: bool = False
    plugin: str = field(default="", compare=False)
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", self.path)
        regex = "".join(
            f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts
        )
        self.pattern = re.compile(regex + r"\Z")
        self.methods = tuple(m.upper() for m in self.methods)

    def match(self, path: str) -> dict[str, str] | None:
        m = self.pattern.match(path)
        return m.groupdict() if m else None


StreamHandler = Callable[[Any, "Host", dict[str, Any]], Awaitable[None]]


@dataclass
class Protocol:
    """Something a ``[server.listener.*]`` can serve (``protocol = "..."``).

    ``transport = "http"``: the host serves its HTTP app (JMAP, plugin routes, middleware)
    on the listener with hypercorn.  ``transport = "stream"``: the host accepts TCP
    connections and calls ``handler(stream, host, listener_config)`` for each, in its own
    task (for protocols such as LMTP).
    """

    name: str
    transport: Literal["http", "stream"] = "http"
    handler: StreamHandler | None = None
    doc: str = ""
    plugin: str = field(default="", compare=False)
