"""The ``ldap`` directory against a real OpenLDAP server (conftest.py), over real HTTP.

Users log in with HTTP Basic (RFC 7617); the Session (RFC 8620 §2) lists the user's own
account and one account per group the directory says it belongs to.  An LDAP server that
cannot answer gives 503 with Retry-After, never 401 or 500.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from jmap_host import ConfigError, DirectoryUnavailable, account_id_for, load_host
from jmap_host.testing import basic, running_server, write_config

SESSION = "/.well-known/jmap"

LDAP_BASE = """\
[server.listener."jmap"]
bind = ["127.0.0.1:0"]
protocol = "jmap"

[storage]
directory = "ldap"
path = "{data}"
"""


def ldap_config(tmp_path: Path, slapd, table: str = "", *, urls: list[str] | None = None) -> Path:
    secret = tmp_path / "bind-secret"
    secret.write_text(slapd.service_pw + "\n")  # a file secret: the trailing newline is dropped
    url_list = ", ".join(f'"{u}"' for u in (urls or [slapd.url]))
    text = f"""
[directory."ldap"]
type = "ldap"
url = [{url_list}]
base-dn = "{slapd.base_dn}"
timeout = "1s"
bind.dn = "{slapd.service_dn}"
bind.secret = "%{{file:{secret}}}%"
filter.active = "(!(pwdAccountLockedTime=*))"
{table}
"""
    return write_config(tmp_path, text, base=LDAP_BASE)


async def status(server, user: str, password: str) -> int:
    async with server.client() as client:
        return (await client.get(SESSION, headers=basic(user, password))).status_code


async def test_bind_login_groups_aliases_and_failover(tmp_path, slapd):
    # The first URL has nobody listening: the directory fails over to the second.
    dead = f"ldap://127.0.0.1:{slapd.free_port()}"
    config = ldap_config(tmp_path, slapd, urls=[dead, slapd.url])
    async with running_server(config) as server, server.client() as client:
        response = await client.get(SESSION, headers=basic("alice", "alice-password"))
        assert response.status_code == 200, response.text
        session = response.json()
        assert session["username"] == "alice"
        own, sales, staff = (account_id_for(n) for n in ("alice", "sales", "staff"))
        accounts = session["accounts"]
        assert set(accounts) == {own, sales, staff}
        assert accounts[own]["isPersonal"] is True
        assert accounts[own]["name"] == "alice@example.org"  # the mail attribute
        assert accounts[sales]["isPersonal"] is False
        assert accounts[sales]["name"] == "sales@example.org"

        # An alias logs in too (filter.email), case-insensitively, as the same user.
        by_alias = await client.get(SESSION, headers=basic("AL@example.org", "alice-password"))
        assert by_alias.status_code == 200 and by_alias.json()["username"] == "alice"

        # bob's {CRYPT} SHA-512 hash is checked by slapd itself when binding.
        assert await status(server, "bob", "bob-password") == 200
        bob = (await client.get(SESSION, headers=basic("bob", "bob-password"))).json()
        assert set(bob["accounts"]) == {account_id_for("bob"), sales}

        wrong = await client.get(SESSION, headers=basic("alice", "wrong"))
        assert wrong.status_code == 401
        assert await status(server, "alice", "") == 401  # never an anonymous bind
        assert await status(server, "nobody", "x") == 401
        assert await status(server, "sales", "x") == 401  # a group is not a login
        # erin is locked (pwdAccountLockedTime): filter.active hides her, although slapd
        # would accept her bind.
        assert await status(server, "erin", "erin-password") == 401
        assert await status(server, "al*", "alice-password") == 401  # filter values escaped

        directory = server.host.directory
        assert (await directory.lookup_email("deals@example.org")).name == "sales"
        assert (await directory.lookup_email("A.Example@Example.org")).name == "alice"
        assert (await directory.lookup_email("erin@example.org")) is None
        assert await directory.lookup_email("nobody@example.org") is None
        alice = await directory.principal("alice")
        assert alice.emails == ("alice@example.org", "al@example.org", "a.example@example.org")
        assert alice.description == "Alice Example"
        assert alice.quota == 1000000
        assert set(alice.member_of) == {"sales", "staff"}
        group = await directory.principal("sales")
        assert group.kind == "group" and group.description == "Sales"
        assert [p.name for p in await directory.members("sales")] == ["alice", "bob"]
        assert await directory.principal("erin") is None


async def test_hash_login_verifies_every_scheme_locally(tmp_path, slapd):
    config = ldap_config(tmp_path, slapd, 'bind.auth.method = "default"\n')
    async with running_server(config) as server:
        # {SSHA}, {CRYPT}$6$ (SHA-512-crypt), {CRYPT}$argon2id$ (which slapd itself cannot
        # bind with), {CRYPT}$2b$ (bcrypt).
        for user in ("alice", "bob", "carol", "dave"):
            assert await status(server, user, f"{user}-password") == 200, user
        assert await status(server, "alice", "bob-password") == 401
        assert await status(server, "carol", "") == 401
        assert await status(server, "erin", "erin-password") == 401  # locked
        assert await status(server, "sales", "x") == 401


async def test_group_search_and_template_bind(tmp_path, slapd):
    config = ldap_config(
        tmp_path,
        slapd,
        'attributes.groups = []\nfilter.member-of = "(&(objectClass=groupOfNames)(member=?))"\n'
        'bind.auth.method = "template"\n'
        f'bind.auth.template = "uid={{username}},{slapd.people}"\n',
    )
    async with running_server(config) as server, server.client() as client:
        session = (await client.get(SESSION, headers=basic("alice", "alice-password"))).json()
        assert set(session["accounts"]) == {account_id_for(n) for n in ("alice", "sales", "staff")}
        assert await status(server, "alice", "wrong") == 401
        # carol's argon2 hash cannot be bound with: template binds are checked by slapd.
        assert await status(server, "carol", "carol-password") == 401
        assert [p.name for p in await server.host.directory.members("staff")] == ["alice"]


async def test_server_stopped_mid_run_answers_503_and_recovers(tmp_path, slapd):
    config = ldap_config(tmp_path, slapd, 'cache.ttl.positive = "1s"\ncache.ttl.negative = "1s"\n')
    async with running_server(config) as server, server.client() as client:
        alice = basic("alice", "alice-password")
        assert (await client.get(SESSION, headers=alice)).status_code == 200
        directory = server.host.directory
        slapd.stop()
        try:
            # Within the cache lifetime the cached entry still answers...
            assert (await directory.principal("alice")).name == "alice"
            await trio.sleep(1.1)
            # ...past it nothing stale is used: every login is a clean temporary failure,
            # including alice's, whose password the host verified a moment ago.
            for headers in (alice, basic("bob", "bob-password"), basic("x", "y")):
                response = await client.get(SESSION, headers=headers)
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"]
                assert response.headers["content-type"].startswith("application/problem+json")
            with pytest.raises(DirectoryUnavailable):
                await directory.lookup_email("alice@example.org")
        finally:
            slapd.start()
        # Back: the pooled connections are dead, the next request opens a new one.
        assert (await client.get(SESSION, headers=alice)).status_code == 200
        assert (await client.get(SESSION, headers=basic("bob", "bob-password"))).status_code == 200

        # A server that accepts connections but never answers: the timeout (1 s) applies.
        slapd.pause()
        try:
            await trio.sleep(1.1)
            started = time.monotonic()
            response = await client.get(SESSION, headers=basic("dave", "dave-password"))
            assert response.status_code == 503
            assert time.monotonic() - started < 5
        finally:
            slapd.resume()
        await trio.sleep(0)
        assert (
            await client.get(SESSION, headers=basic("dave", "dave-password"))
        ).status_code == 200


async def test_cache_lifetime_is_respected(tmp_path, slapd):
    from passlib.hash import ldap_salted_sha1

    dn = f"uid=frank,{slapd.people}"
    slapd.add(
        [
            (
                dn,
                {
                    "objectClass": ["inetOrgPerson"],
                    "uid": "frank",
                    "cn": "Frank",
                    "sn": "Example",
                    "displayName": "Frank One",
                    "userPassword": ldap_salted_sha1.hash("old-password"),
                },
            )
        ]
    )
    config = ldap_config(
        tmp_path,
        slapd,
        'bind.auth.method = "default"\ncache.ttl.positive = "1s"\ncache.ttl.negative = "1s"\n',
    )
    try:
        async with running_server(config) as server:
            directory = server.host.directory
            assert (await directory.principal("frank")).description == "Frank One"
            assert await directory.principal("gone") is None
            slapd.modify(
                dn,
                {
                    "displayName": [("MODIFY_REPLACE", ["Frank Two"])],
                    "userPassword": [("MODIFY_REPLACE", [ldap_salted_sha1.hash("new-password")])],
                },
            )
            # Within the lifetime the cached entry (and its hash) is used...
            assert (await directory.principal("frank")).description == "Frank One"
            assert await directory.authenticate("frank", "old-password") is not None
            await trio.sleep(1.1)
            # ...and never past it.
            assert (await directory.principal("frank")).description == "Frank Two"
            assert await directory.authenticate("frank", "old-password") is None
            assert await status(server, "frank", "old-password") == 401
            assert await status(server, "frank", "new-password") == 200
    finally:
        conn = slapd.admin()
        conn.delete(dn)
        conn.unbind()


def test_configuration_is_checked_without_a_server(tmp_path, monkeypatch):
    monkeypatch.setenv("LDAP_TEST_SECRET", "s3cret")
    good = write_config(
        tmp_path,
        """
        [directory."ldap"]
        type = "ldap"
        url = "ldaps://ldap.invalid"
        base-dn = "dc=example,dc=org"
        bind.dn = "cn=jmap,dc=example,dc=org"
        bind.secret = "%{env:LDAP_TEST_SECRET}%"
        """,
        base=LDAP_BASE,
    )
    directory = load_host(good).directory  # no connection is made
    assert directory.bind_secret == "s3cret"
    assert directory.hash_mode is False and directory.cache_entries == 1000

    bad = write_config(
        tmp_path,
        """
        [directory."ldap"]
        type = "ldap"
        url = ["http://ldap.example.org", "ldap://ldap.example.org:99999"]
        base-dn = "not a dn"
        bind.secret = "%{env:LDAP_NOT_SET}%"
        bind.auth.method = "template"
        filter.name = "(uid=alice)"
        filter.active = "(|(a=b)))"
        attributes.secret = []
        """,
        base=LDAP_BASE,
        name="bad.toml",
    )
    with pytest.raises(ConfigError) as exc:
        load_host(bad)
    text = str(exc.value)
    for expected in (
        "directory.ldap.url: 'http://ldap.example.org': use ldap://",
        "directory.ldap.base-dn: 'not a dn' is not a distinguished name",
        "directory.ldap.bind.secret: environment variable 'LDAP_NOT_SET' is not set",
        'directory.ldap.bind.auth.template: bind.auth.method = "template" needs a DN',
        "directory.ldap.filter.name: needs a '?'",
        "directory.ldap.filter.active: unbalanced parentheses",
    ):
        assert expected in text, text


async def test_principals_come_from_ldap(tmp_path, slapd):
    """RFC 9670 §2: Principal/get and /query list what filter.name finds (its ``?`` as
    ``*``): users, groups, and device/room entries as resources and locations; disabled
    entries (filter.active) are not there."""
    finds = (
        '"(|(&(objectClass=inetOrgPerson)(uid=?))(&(objectClass=groupOfNames)(cn=?))'
        '(&(|(objectClass=device)(objectClass=room))(cn=?)))"'
    )
    config = ldap_config(tmp_path, slapd, f"filter.name = {finds}")
    me = account_id_for("alice")
    using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:principals"]
    async with running_server(config) as server, server.client() as client:
        body = {
            "using": using,
            "methodCalls": [
                ["Principal/query", {"accountId": me, "filter": {"type": "resource"}}, "q"],
                ["Principal/get", {"accountId": me, "ids": None}, "g"],
            ],
        }
        reply = await client.post("/jmap/api", json=body, headers=basic("alice", "alice-password"))
        assert reply.status_code == 200, reply.text
        query, got = (r[1] for r in reply.json()["methodResponses"])
    assert query["ids"] == [account_id_for("projector")]
    types = {p["id"]: p["type"] for p in got["list"]}
    assert types[account_id_for("room-4b")] == "location"
    assert types[account_id_for("sales")] == "group"
    assert types[me] == "individual"
    assert account_id_for("erin") not in types  # locked: filter.active
    alice = next(p for p in got["list"] if p["id"] == me)
    assert alice["name"] == "Alice Example" and alice["email"] == "alice@example.org"
    assert set(alice["accounts"]) == {me}
