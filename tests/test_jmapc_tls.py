"""A real third-party client, jmapc (PyPI), against a TLS listener: it fetches the session
over https (RFC 8620 §2, §8.1) and calls Core/echo (§4)."""

from __future__ import annotations

import trio
from jmapc import Client
from jmapc.methods import CoreEcho

from jmap_host.testing import PASSWORDS, running_server, write_tls_config


def tls_config(tmp_path):
    return write_tls_config(tmp_path)


async def test_jmapc_fetches_session_over_tls_and_echoes(tmp_path, monkeypatch):
    config, ca_file = tls_config(tmp_path)
    # requests (under jmapc) trusts the test CA through its documented variable.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    async with running_server(config) as server:
        url = server.url
        assert url.startswith("https://")
        hostport = url.removeprefix("https://")

        def use_jmapc():
            client = Client.create_with_password(hostport, "alice", PASSWORDS["alice"])
            session = client.jmap_session
            echo = client.request(CoreEcho(data={"hello": True, "high": 5}))
            return session, echo

        session, echo = await trio.to_thread.run_sync(use_jmapc)
        assert session.username == "alice"
        assert session.api_url == f"{url}/jmap/api"
        assert session.capabilities.core.max_calls_in_request == 16
        assert echo.data == {"hello": True, "high": 5}


async def test_jmapc_with_bearer_app_password(tmp_path, monkeypatch):
    """Bearer app passwords work for a real client too."""
    from jmap_host import load_host, tokens

    config, ca_file = tls_config(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    host = load_host(config)
    host.store.migrate()
    _, secret = tokens.create(host.store, "alice", "jmapc")
    async with running_server(host) as server:
        hostport = server.url.removeprefix("https://")

        def use_jmapc():
            client = Client.create_with_api_token(hostport, secret)
            return client.request(CoreEcho(data={"via": "bearer"}))

        echo = await trio.to_thread.run_sync(use_jmapc)
        assert echo.data == {"via": "bearer"}
