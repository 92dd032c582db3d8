"""Test helpers for jmap-host and its plugins (a pytest plugin, registered as ``pytest11``).

```python
from jmap_host.testing import write_config, running_server

async def test_greet(tmp_path):
    config = write_config(tmp_path)                 # 127.0.0.1:0, users alice and bob
    async with running_server(config) as server:    # a real hypercorn on a free port
        async with server.client("alice") as client:   # httpx, Basic auth as alice
            response = await client.get("/.well-known/jmap")
```
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .host import Host, load_host

PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}

BASE_CONFIG = """\
[server.listener."jmap"]
bind = ["127.0.0.1:0"]
protocol = "jmap"

[storage]
directory = "memory"
path = "{data}"

[directory."memory"]
type = "memory"

[[directory."memory".principals]]
name = "alice"
secret = "alice-password"
email = ["alice@example.org", "sales@example.org"]
description = "Alice Example"
member-of = ["sales"]

[[directory."memory".principals]]
name = "bob"
secret = "bob-password"
email = ["bob@example.org"]
description = "Bob Example"

[[directory."memory".principals]]
name = "sales"
class = "group"
email = ["sales-team@example.org"]
description = "Sales"
"""


def write_config(
    directory: Path, extra: str = "", *, base: str | None = None, name: str = "jmap.toml"
) -> Path:
    """Write a test configuration into ``directory``: one JMAP listener on 127.0.0.1 with a
    free port, data under ``directory/data``, users alice and bob (passwords in
    :data:`PASSWORDS`) and the group sales.  ``extra`` TOML is appended."""
    text = (base if base is not None else BASE_CONFIG).format(data=(directory / "data").as_posix())
    path = directory / name
    path.write_text(text + "\n" + textwrap.dedent(extra), encoding="utf-8")
    return path


def write_tls_config(directory: Path, extra: str = "") -> tuple[Path, Path]:
    """:func:`write_config` with its listener on TLS, a certificate for 127.0.0.1 and
    localhost from a throw-away CA (trustme); returns (config, CA file).  Clients built on
    requests (jmapc) trust the CA through ``REQUESTS_CA_BUNDLE``."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    config = write_config(directory, extra)
    text = config.read_text().replace(
        'protocol = "jmap"\n',
        'protocol = "jmap"\ntls.certificate = "cert.pem"\ntls.private-key = "key.pem"\n',
        1,
    )
    config.write_text(text)
    return config, directory / "ca.pem"


def basic(user: str, password: str | None = None) -> dict[str, str]:
    """An Authorization header for ``user`` (password from :data:`PASSWORDS` by default)."""
    secret = PASSWORDS[user] if password is None else password
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class RunningServer:
    """A server started by :func:`running_server`: its host and the URLs it listens on."""

    host: Host
    urls: dict[str, list[str]]

    @property
    def url(self) -> str:
        """Base URL of the first HTTP listener."""
        for urls in self.urls.values():
            for url in urls:
                if url.startswith("http"):
                    return url
        raise LookupError("no HTTP listener")

    def client(self, user: str | None = None, password: str | None = None, **kwargs: Any) -> Any:
        """An ``httpx.AsyncClient`` on this server, authenticated as ``user`` if given."""
        import httpx

        headers = basic(user, password) if user else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10, **kwargs)


@asynccontextmanager
async def running_server(
    config: Path | Host, *, extra_plugins: Iterable[tuple[str, Any]] = ()
) -> AsyncIterator[RunningServer]:
    """Start a real server (hypercorn on trio) for the configuration and stop it on exit."""
    from .server import serve

    host = config if isinstance(config, Host) else load_host(config, extra_plugins=extra_plugins)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            lambda task_status: serve(host, shutdown=shutdown, task_status=task_status)
        )
        try:
            yield RunningServer(host, urls)
        finally:
            shutdown.set()


async def api(
    client: Any, calls: list[list[Any]], using: list[str] | None = None, **extra: Any
) -> Any:
    """POST a JMAP request with ``client`` and return the decoded response (asserting 200)."""
    body = {"using": using or ["urn:ietf:params:jmap:core"], "methodCalls": calls, **extra}
    response = await client.post("/jmap/api", json=body)
    assert response.status_code == 200, response.text
    return response.json()


class AccountClient:
    """One account's JMAP client for tests: ``call`` makes one method call in the account
    with the capabilities ``using`` and answers its arguments, or ``{"error": ...}`` for a
    method error; ``ok`` fails the test on one.  ``http`` is an httpx client of the server
    (``RunningServer.client(user)``)."""

    def __init__(self, http: Any, account: str, using: list[str] | None = None):
        self.http, self.account = http, account
        self.using = using or ["urn:ietf:params:jmap:core"]

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        body = {
            "using": self.using,
            "methodCalls": [[name, {"accountId": self.account, **args}, "c"]],
        }
        reply = await self.http.post("/jmap/api", json=body)
        assert reply.status_code == 200, reply.text
        answered, result, _ = reply.json()["methodResponses"][0]
        return result if answered == name else {"error": result}

    async def ok(self, name: str, **args: Any) -> dict[str, Any]:
        result = await self.call(name, **args)
        assert "error" not in result, result
        return result

    async def session(self) -> Any:
        return (await self.http.get("/jmap/session")).json()

    async def upload(
        self, data: bytes, media: str = "application/octet-stream", account: str | None = None
    ) -> str:
        """POST ``data`` to the upload endpoint of this account (or ``account``)."""
        reply = await self.http.post(
            f"/jmap/upload/{account or self.account}/", content=data,
            headers={"Content-Type": media},
        )  # fmt: skip
        assert reply.status_code == 201, reply.text
        return str(reply.json()["blobId"])


async def eventually(check: Any, timeout: float = 15.0) -> Any:
    """Await ``check()`` every 50 ms until it answers something truthy and return that;
    fail (``trio.TooSlowError``) after ``timeout`` seconds.  For what the server does in
    the background (queued mail, deliveries, alerts): generous, as the machine may be busy."""
    with trio.fail_after(timeout):
        while not (result := await check()):
            await trio.sleep(0.05)
        return result


try:
    import pytest
except ImportError:  # pragma: no cover - the helpers above work without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def jmap_config(tmp_path: Path) -> Path:
        """A test configuration file (see :func:`write_config`)."""
        return write_config(tmp_path)
