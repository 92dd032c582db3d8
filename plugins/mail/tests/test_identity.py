"""Identity (RFC 8621 §6) and the submission capability (§1.3.2) over real HTTP."""

from __future__ import annotations

from typing import Any

from jmap_host.testing import api, running_server

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
VACATION = "urn:ietf:params:jmap:vacationresponse"
USING = [CORE, MAIL, SUBMISSION]


async def call(http: Any, account: str, name: str, **args: Any) -> dict[str, Any]:
    result = await api(http, [[name, {"accountId": account, **args}, "c"]], using=USING)
    response = result["methodResponses"][0]
    return response[1] if response[0] == name else {"error": response[1]}


async def test_capabilities_in_session(jmap_config):
    """§1.3.2 and §1.3.3: empty session objects; maxDelayedSend 0, no extensions."""
    async with running_server(jmap_config) as server, server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        assert session["capabilities"][SUBMISSION] == {}
        assert session["capabilities"][VACATION] == {}
        own = session["primaryAccounts"][MAIL]
        assert session["primaryAccounts"][SUBMISSION] == own
        caps = session["accounts"][own]["accountCapabilities"]
        assert caps[SUBMISSION] == {"maxDelayedSend": 0, "submissionExtensions": {}}
        assert caps[VACATION] == {}


async def test_default_identities_and_set(jmap_config):
    """One undeletable Identity per address; creates only for the user's addresses
    (forbiddenFrom otherwise); mayDelete is server-set; email is immutable."""
    async with running_server(jmap_config) as server, server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        account = session["primaryAccounts"][MAIL]
        got = await call(http, account, "Identity/get", ids=None)
        defaults = sorted(got["list"], key=lambda i: i["email"])
        assert [i["email"] for i in defaults] == ["alice@example.org", "sales@example.org"]
        assert defaults[0] == {
            "id": defaults[0]["id"],
            "name": "Alice Example",
            "email": "alice@example.org",
            "replyTo": None,
            "bcc": None,
            "textSignature": "",
            "htmlSignature": "",
            "mayDelete": False,
        }
        state = got["state"]

        result = await call(
            http,
            account,
            "Identity/set",
            create={
                "work": {
                    "name": "Alice at work",
                    "email": "ALICE@example.org",
                    "textSignature": "-- \nAlice",
                    "bcc": [{"name": None, "email": "archive@example.org"}],
                },
                "bob": {"email": "bob@example.org"},
                "wild": {"email": "*@example.org"},
                "bad": {"email": "alice@example.org", "replyTo": [{"email": "no at sign"}]},
                "server": {"email": "alice@example.org", "mayDelete": False},
            },
        )
        work = result["created"]["work"]
        assert work["mayDelete"] is True
        assert result["notCreated"]["bob"]["type"] == "forbiddenFrom"
        assert result["notCreated"]["wild"]["type"] == "forbiddenFrom"
        assert result["notCreated"]["bad"]["properties"] == ["replyTo"]
        assert result["notCreated"]["server"]["properties"] == ["mayDelete"]

        updated = await call(
            http,
            account,
            "Identity/set",
            update={
                work["id"]: {"name": "Alice A."},
                defaults[0]["id"]: {"email": "sales@example.org"},
            },
        )
        assert updated["updated"] == {work["id"]: None}
        assert updated["notUpdated"][defaults[0]["id"]]["properties"] == ["email"]

        changes = await call(http, account, "Identity/changes", sinceState=state)
        assert changes["created"] == [work["id"]]

        destroyed = await call(
            http, account, "Identity/set", destroy=[work["id"], defaults[0]["id"]]
        )
        assert destroyed["destroyed"] == [work["id"]]
        assert destroyed["notDestroyed"][defaults[0]["id"]]["type"] == "forbidden"


async def test_group_account_identities(jmap_config):
    """A group account sends as the group's addresses, not the member's."""
    async with running_server(jmap_config) as server, server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        group = next(a for a, v in session["accounts"].items() if not v["isPersonal"])
        assert SUBMISSION in session["accounts"][group]["accountCapabilities"]
        got = await call(http, group, "Identity/get", ids=None)
        assert [i["email"] for i in got["list"]] == ["sales-team@example.org"]
        result = await call(
            http, group, "Identity/set", create={"me": {"email": "alice@example.org"}}
        )
        assert result["notCreated"]["me"]["type"] == "forbiddenFrom"
