"""A small JMAP client for the benchmarks: session discovery, API calls, uploads.

Nothing here is specific to jmap-host: the session comes from ``/.well-known/jmap`` (RFC 8620
§2.2, redirects followed), and every URL the suite uses (apiUrl, uploadUrl, eventSourceUrl)
comes from that session, so the same scripts run against any JMAP server.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

try:  # a response's decoding is the client's time, not the server's: keep it small
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency of jmap-host
    from json import loads as _loads

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
USING = [CORE, MAIL]


class JMAPError(Exception):
    """A request-level failure (HTTP status other than 200, or a problem document)."""


@dataclass
class Session:
    url: str  # where the session resource was finally found
    data: dict[str, Any]
    account_id: str
    api_url: str
    upload_url: str
    event_source_url: str
    core: dict[str, Any] = field(default_factory=dict)


def on_node(session: Session, base_url: str) -> Session:
    """The same session's URLs on another node of the same deployment (several jmap-host
    nodes on one database, each reached directly rather than through a load balancer)."""
    node = urlsplit(base_url)

    def moved(url: str) -> str:
        return urlunsplit(urlsplit(url)._replace(scheme=node.scheme, netloc=node.netloc))

    return replace(
        session,
        url=moved(session.url),
        api_url=moved(session.api_url),
        upload_url=moved(session.upload_url),
        event_source_url=moved(session.event_source_url),
    )


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def new_http(base_url: str, user: str, password: str, **kwargs: Any) -> httpx.AsyncClient:
    """One client = one connection pool: each simulated user gets its own."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": basic_auth(user, password)},
        timeout=kwargs.pop("timeout", 60.0),
        follow_redirects=True,
        limits=httpx.Limits(max_connections=kwargs.pop("max_connections", 8)),
        **kwargs,
    )


async def discover(http: httpx.AsyncClient, base_url: str) -> Session:
    """GET /.well-known/jmap (following redirects) and pick the mail account."""
    response = await http.get(urljoin(base_url, "/.well-known/jmap"))
    if response.status_code != 200:
        raise JMAPError(f"session: HTTP {response.status_code}: {response.text[:200]}")
    data = response.json()
    account = data["primaryAccounts"].get(MAIL)
    if account is None:
        raise JMAPError("the session has no primary account for urn:ietf:params:jmap:mail")
    final = str(response.url)
    return Session(
        url=final,
        data=data,
        account_id=account,
        api_url=urljoin(final, data["apiUrl"]),
        upload_url=urljoin(final, data["uploadUrl"]),
        event_source_url=urljoin(final, data["eventSourceUrl"]),
        core=data["capabilities"].get(CORE, {}),
    )


class Client:
    """A JMAP client bound to one session and account."""

    def __init__(self, http: httpx.AsyncClient, session: Session):
        self.http = http
        self.session = session
        self.account = session.account_id
        self.using = list(USING)  # the capabilities every request uses (contacts.py adds)

    @classmethod
    async def connect(cls, url: str, user: str, password: str, **kwargs: Any) -> Client:
        http = new_http(url, user, password, **kwargs)
        try:
            session = await discover(http, url)
        except BaseException:
            await http.aclose()
            raise
        return cls(http, session)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, calls: list[list[Any]]) -> list[list[Any]]:
        """POST one JMAP request; returns methodResponses.  accountId is filled in."""
        for call in calls:
            call[1].setdefault("accountId", self.account)
        response = await self.http.post(
            self.session.api_url, json={"using": self.using, "methodCalls": calls}
        )
        if response.status_code != 200:
            raise JMAPError(f"HTTP {response.status_code}: {response.text[:300]}")
        return _loads(response.content)["methodResponses"]

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        """One method call; a method-level error is raised as JMAPError."""
        (response,) = await self.request([[name, args, "0"]])
        if response[0] == "error":
            raise JMAPError(f"{name}: {response[1]}")
        return response[1]

    async def upload(self, data: bytes, media_type: str = "message/rfc822") -> str:
        url = self.session.upload_url.replace("{accountId}", self.account)
        response = await self.http.post(url, content=data, headers={"Content-Type": media_type})
        if response.status_code not in (200, 201):
            raise JMAPError(f"upload: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()["blobId"]


def method_errors(responses: list[list[Any]]) -> list[str]:
    """The error types among a request's method responses (empty when all succeeded)."""
    return [r[1].get("type", "?") for r in responses if r[0] == "error"]
