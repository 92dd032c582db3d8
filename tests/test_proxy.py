"""Behind a reverse proxy: the client address for login throttling comes from
X-Forwarded-For only when the operator says the peer is a trusted proxy."""

from __future__ import annotations

from jmap_host.testing import basic, running_server, write_config

THROTTLE = '[authentication]\nmax-failures = 2\nfailure-window = "1m"\n'


async def fail_twice(client, headers):
    for _ in range(2):
        response = await client.get("/jmap/session", headers={**basic("alice", "wrong"), **headers})
        assert response.status_code == 401


async def test_forwarded_address_is_throttled_separately_behind_trusted_proxy(tmp_path):
    config = write_config(tmp_path, THROTTLE + "[server.http]\nuse-x-forwarded = true\n")
    async with running_server(config) as server, server.client() as client:
        attacker = {"X-Forwarded-For": "203.0.113.5"}
        await fail_twice(client, attacker)
        blocked = await client.get("/jmap/session", headers={**basic("alice"), **attacker})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        # Another user behind the same proxy is not locked out by the attacker.
        other = {"X-Forwarded-For": "198.51.100.7, 127.0.0.1"}
        ok = await client.get("/jmap/session", headers={**basic("alice"), **other})
        assert ok.status_code == 200


async def test_forwarded_header_is_ignored_unless_enabled(tmp_path):
    """Without use-x-forwarded, a client cannot dodge throttling by inventing the header."""
    config = write_config(tmp_path, THROTTLE)
    async with running_server(config) as server, server.client() as client:
        await fail_twice(client, {"X-Forwarded-For": "203.0.113.5"})
        dodge = await client.get(
            "/jmap/session", headers={**basic("alice"), "X-Forwarded-For": "192.0.2.99"}
        )
        assert dodge.status_code == 429


def test_trusted_networks_are_validated(tmp_path):
    import pytest

    from jmap_host import ConfigError, load_host

    config = write_config(tmp_path, '[server.proxy]\ntrusted-networks = ["10.0.0.0/8", "nope"]\n')
    with pytest.raises(ConfigError, match=r"server\.proxy\.trusted-networks: item 1 \('nope'\)"):
        load_host(config)
