"""Tests of the example plugin: a template for testing a plugin of your own.

They start a real server with the plugin installed (its entry point, as in production) and
talk to it over HTTP with the helpers in ``jmap_host.testing``.
"""

from __future__ import annotations

import pytest

from jmap_host.testing import api, running_server, write_config

# The example plugin is opt-in (JMAP_HOST_OPT_IN): its tests' configurations opt in.
EXAMPLE_ON = '[plugins]\nopt-in = ["example"]\n'

CORE = "urn:ietf:params:jmap:core"
URN = "https://jmap-host.org/ext/example"


@pytest.fixture
def jmap_config(tmp_path):
    """jmap_host.testing's test configuration, with this plugin opted in."""
    return write_config(tmp_path, EXAMPLE_ON)


async def test_inactive_unless_the_configuration_opts_in(tmp_path):
    """An opt-in plugin: installed, but a configuration that does not name it (the
    embedded demo one among them) neither advertises its capability nor serves it."""
    async with running_server(write_config(tmp_path)) as server:
        assert "example" not in {p.name for p in server.host.active_plugins}
        async with server.client("alice") as client:
            session = (await client.get("/.well-known/jmap")).json()
            assert URN not in session["capabilities"]
            assert (await client.get("/example/ping")).status_code == 404


async def test_capability_appears_in_the_session(jmap_config):
    """RFC 8620 §2: the capability is in `capabilities` and in each account's
    `accountCapabilities`, and the user's own account is primary for it."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        session = (await client.get("/.well-known/jmap")).json()
        assert session["capabilities"][URN] == {"version": 1}
        for account in session["accounts"].values():
            assert account["accountCapabilities"][URN] == {"maxNames": 500}
        assert session["primaryAccounts"][URN] == session["primaryAccounts"][CORE]


async def test_greet_uses_the_configured_greeting(tmp_path):
    config = write_config(tmp_path, EXAMPLE_ON + '[plugins.example]\ngreeting = "Bonjour"\n')
    async with running_server(config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][URN]
        result = await api(
            client,
            [["Example/greet", {"accountId": account, "names": ["Ann", "Bo"]}, "g"]],
            using=[CORE, URN],
        )
        assert result["methodResponses"] == [
            [
                "Example/greet",
                {"accountId": account, "greetings": ["Bonjour, Ann!", "Bonjour, Bo!"]},
                "g",
            ]
        ]


async def test_greet_rejects_bad_arguments(jmap_config):
    """RFC 8620 §3.6.2: invalidArguments for arguments of the wrong type."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][URN]
        result = await api(
            client,
            [["Example/greet", {"accountId": account, "names": "Ann"}, "g"]],
            using=[CORE, URN],
        )
        assert result["methodResponses"][0][1]["type"] == "invalidArguments"


async def test_ping_route_needs_no_login(jmap_config):
    async with running_server(jmap_config) as server, server.client() as client:
        response = await client.get("/example/ping")
        assert response.json() == {"pong": True}


def test_greeting_must_not_be_empty(tmp_path):
    """The plugin's key is validated with the rest of the file."""
    import pytest

    from jmap_host import ConfigError, load_host

    config = write_config(
        tmp_path, EXAMPLE_ON + '[plugins.example]\ngreeting = ""\ngreting = "x"\n'
    )
    with pytest.raises(ConfigError) as error:
        load_host(config)
    text = str(error.value)
    assert f"{config}: plugins.example.greeting: must not be empty" in text
    assert "plugins.example.greting: unknown key (did you mean 'greeting'?)" in text


async def test_note_type_gets_the_standard_methods(jmap_config):
    """The declared Note type: Note/set, Note/get, Note/query and Note/changes come from
    the host (RFC 8620 §5); the plugin only described the type."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][URN]
        upload = await client.post(f"/jmap/upload/{account}/", content=b"attached")
        blob = upload.json()["blobId"]
        result = await api(
            client,
            [
                [
                    "Note/set",
                    {
                        "accountId": account,
                        "create": {
                            "n1": {"title": "Buy milk", "tags": ["home"], "attachment": blob},
                            "n2": {"title": "   "},
                        },
                    },
                    "s",
                ],
                ["Note/query", {"accountId": account, "filter": {"tag": "home"}}, "q"],
                [
                    "Note/get",
                    {
                        "accountId": account,
                        "#ids": {"resultOf": "q", "name": "Note/query", "path": "/ids"},
                    },
                    "g",
                ],
                ["Note/changes", {"accountId": account, "sinceState": "0"}, "c"],
            ],
            using=[CORE, URN],
        )
        created, query, got, changes = (r[1] for r in result["methodResponses"])
        note_id = created["created"]["n1"]["id"]
        assert created["created"]["n1"]["created"].endswith("Z")
        assert created["notCreated"]["n2"]["properties"] == ["title"]
        assert query["ids"] == [note_id]
        assert got["list"][0]["attachment"] == blob
        assert changes["created"] == [note_id]
