"""Principals (RFC 9670 §1.5, §2) at the wire: the capability in the Session and in each
account (currentUserPrincipalId, principals:owner), Principal/get, /query with every filter
of §2.4.1, /changes and /queryChanges of a directory that keeps no log (§2.2, §2.5),
Principal/set for the user's own name, description and timeZone only (§2.3), and an
unmodified client (jmaplib) reading them."""

from __future__ import annotations

from typing import Any

import trio

from jmap_host import account_id_for
from jmap_host.testing import AccountClient, api, running_server, write_config

EXAMPLE_ON = False  # (tests/conftest.py: the example plugin stays off)

CORE = "urn:ietf:params:jmap:core"
PRINCIPALS = "urn:ietf:params:jmap:principals"
OWNER = "urn:ietf:params:jmap:principals:owner"
USING = [CORE, PRINCIPALS]

MORE_PRINCIPALS = """
[[directory."memory".principals]]
name = "projector"
class = "resource"
description = "Projector 2"

[[directory."memory".principals]]
name = "room-4b"
class = "location"
email = ["room-4b@example.org"]
description = "Room 4B"
time-zone = "Europe/Paris"
"""

ALICE, BOB, SALES = (account_id_for(n) for n in ("alice", "bob", "sales"))
PROJECTOR, ROOM = account_id_for("projector"), account_id_for("room-4b")


async def ok(client: Any, name: str, **args: Any) -> dict[str, Any]:
    return await AccountClient(client, ALICE, USING).ok(name, **args)


async def error(client: Any, name: str, **args: Any) -> str:
    result = await AccountClient(client, ALICE, USING).call(name, **args)
    assert "error" in result, result
    return str(result["error"]["type"])


async def test_session_names_the_principal_account_and_every_owner(tmp_path):
    """§1.5.1: {} in the Session, currentUserPrincipalId in the account holding the
    Principals (the user's own); §1.5.2: principals:owner in every owned account, never
    in the Session's capabilities."""
    async with running_server(write_config(tmp_path, MORE_PRINCIPALS)) as server:
        async with server.client("alice") as alice:
            session = (await alice.get("/jmap/session")).json()
    assert session["capabilities"][PRINCIPALS] == {}
    assert OWNER not in session["capabilities"]
    own = session["accounts"][ALICE]["accountCapabilities"]
    assert own[PRINCIPALS] == {"currentUserPrincipalId": ALICE}
    assert own[OWNER] == {"accountIdForPrincipal": ALICE, "principalId": ALICE}
    group = session["accounts"][SALES]["accountCapabilities"]
    assert PRINCIPALS not in group  # the Principals are in alice's own account only
    assert group[OWNER] == {"accountIdForPrincipal": ALICE, "principalId": SALES}
    assert session["primaryAccounts"][PRINCIPALS] == ALICE


async def test_principal_get_from_the_directory(tmp_path):
    """§2, §2.1: every principal of the directory with its type; accounts only where the
    user can use the principal's data; ids are the owners' account ids."""
    async with running_server(write_config(tmp_path, MORE_PRINCIPALS)) as server:
        async with server.client("alice") as alice:
            got = await ok(alice, "Principal/get", ids=None)
            by_id = {p["id"]: p for p in got["list"]}
            assert set(by_id) == {ALICE, BOB, SALES, PROJECTOR, ROOM}
            me = by_id[ALICE]
            assert me["type"] == "individual" and me["name"] == "Alice Example"
            assert me["email"] == "alice@example.org" and me["description"] is None
            assert list(me["accounts"]) == [ALICE]
            assert me["accounts"][ALICE]["isPersonal"] is True
            assert list(by_id[SALES]["accounts"]) == [SALES]
            assert by_id[SALES]["type"] == "group"
            assert by_id[BOB]["accounts"] is None  # nothing of bob's is alice's to use
            assert by_id[PROJECTOR]["type"] == "resource" and by_id[PROJECTOR]["email"] is None
            assert by_id[ROOM]["type"] == "location"
            assert by_id[ROOM]["timeZone"] == "Europe/Paris"
            some = await ok(alice, "Principal/get", ids=[ROOM, "nope", BOB], properties=["name"])
            assert some["list"] == [
                {"id": ROOM, "name": "Room 4B"},
                {"id": BOB, "name": "Bob Example"},
            ]
            assert some["notFound"] == ["nope"]
            assert some["state"] == got["state"]
            assert await error(alice, "Principal/get", ids=None, properties=["x"]) == (
                "invalidArguments"
            )
            # The Principals live in alice's own account only (§1.5.1).
            reply = await api(
                alice, [["Principal/get", {"accountId": SALES, "ids": None}, "c"]], USING
            )
            assert reply["methodResponses"][0][1]["type"] == "accountNotSupportedByMethod"


async def test_principal_query_every_filter_of_2_4_1(tmp_path):
    """§2.4.1: accountIds, email, name, text, type and timeZone, all of a FilterCondition
    together, inside operators; sort and paging as §5.5."""
    async with running_server(write_config(tmp_path, MORE_PRINCIPALS)) as server:
        async with server.client("alice") as alice:

            async def ids(**args: Any) -> list[str]:
                return (await ok(alice, "Principal/query", **args))["ids"]

            assert await ids(filter={"type": "group"}) == [SALES]
            assert await ids(filter={"accountIds": [SALES, "other"]}) == [SALES]
            assert await ids(filter={"email": "ROOM-4B@"}) == [ROOM]
            assert await ids(filter={"name": "example"}) == [ALICE, BOB]
            assert set(await ids(filter={"text": "example.org"})) == {ALICE, BOB, SALES, ROOM}
            assert await ids(filter={"timeZone": "Europe/Paris"}) == [ROOM]
            assert await ids(filter={"timeZone": "Europe"}) == []  # exactly as given
            assert await ids(filter={"type": "individual", "name": "bob"}) == [BOB]
            assert await ids(
                filter={
                    "operator": "OR",
                    "conditions": [{"type": "resource"}, {"type": "location"}],
                }
            ) == [PROJECTOR, ROOM]
            assert await ids(
                filter={"operator": "NOT", "conditions": [{"type": "individual"}]}
            ) == [PROJECTOR, ROOM, SALES]
            # By name when no sort is given; a sort on name descending; paging.
            assert await ids() == [ALICE, BOB, PROJECTOR, ROOM, SALES]
            assert await ids(sort=[{"property": "name", "isAscending": False}]) == [
                SALES, ROOM, PROJECTOR, BOB, ALICE
            ]  # fmt: skip
            page = await ok(alice, "Principal/query", position=1, limit=2, calculateTotal=True)
            assert page["ids"] == [BOB, PROJECTOR] and page["total"] == 5
            anchored = await ok(alice, "Principal/query", anchor=ROOM, anchorOffset=-1)
            assert anchored["ids"] == [PROJECTOR, ROOM, SALES]
            assert anchored["canCalculateChanges"] is False
            assert await error(alice, "Principal/query", filter={"colour": "x"}) == (
                "unsupportedFilter"
            )
            assert await error(alice, "Principal/query", filter={"type": 3}) == "invalidArguments"
            assert await error(alice, "Principal/query", sort=[{"property": "x"}]) == (
                "unsupportedSort"
            )
            assert await error(alice, "Principal/query", anchor="nope") == "anchorNotFound"


async def test_changes_and_query_changes_of_a_directory(tmp_path):
    """§2.2, §2.5: the directory keeps no log: the same state has no changes, any other
    cannot be calculated."""
    async with running_server(write_config(tmp_path, MORE_PRINCIPALS)) as server:
        async with server.client("alice") as alice:
            state = (await ok(alice, "Principal/get", ids=[]))["state"]
            same = await ok(alice, "Principal/changes", sinceState=state)
            assert (same["created"], same["updated"], same["destroyed"]) == ([], [], [])
            assert same["newState"] == state
            assert await error(alice, "Principal/changes", sinceState="old") == (
                "cannotCalculateChanges"
            )
            query_state = (await ok(alice, "Principal/query"))["queryState"]
            unchanged = await ok(alice, "Principal/queryChanges", sinceQueryState=query_state)
            assert unchanged["added"] == [] and unchanged["removed"] == []
            assert await error(alice, "Principal/queryChanges", sinceQueryState="old") == (
                "cannotCalculateChanges"
            )


async def test_principal_set_only_the_users_own_details(tmp_path):
    """§2.3: the user may update the name, description and timeZone of their own
    Principal; every other change is rejected with forbidden; the directory is not
    written, and the new values are what every user sees."""
    async with running_server(write_config(tmp_path, MORE_PRINCIPALS)) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            before = (await ok(alice, "Principal/get", ids=[ALICE]))["state"]
            result = await ok(
                alice,
                "Principal/set",
                update={
                    ALICE: {"name": "Alice E.", "description": "Sales lead",
                            "timeZone": "America/New_York"},
                    BOB: {"name": "Not Bob"},
                    "nope": {"name": "x"},
                },
                create={"new": {"type": "individual", "name": "Eve"}},
                destroy=[BOB],
            )  # fmt: skip
            assert result["oldState"] == before and result["newState"] != before
            assert result["updated"] == {ALICE: None}
            assert result["notUpdated"][BOB]["type"] == "forbidden"
            assert result["notUpdated"]["nope"]["type"] == "notFound"
            assert result["notCreated"]["new"]["type"] == "forbidden"
            assert result["notDestroyed"][BOB]["type"] == "forbidden"
            reply = await api(bob, [["Principal/get", {"accountId": BOB, "ids": [ALICE]}, "c"]],
                              USING)  # fmt: skip
            seen = reply["methodResponses"][0][1]["list"][0]
            assert (seen["name"], seen["description"], seen["timeZone"]) == (
                "Alice E.", "Sales lead", "America/New_York"
            )  # fmt: skip
            assert seen["email"] == "alice@example.org"
            bad = await ok(
                alice,
                "Principal/set",
                update={ALICE: {"timeZone": "Mars/Olympus"}},
            )
            assert bad["notUpdated"][ALICE]["type"] == "invalidProperties"
            directory_owned = await ok(
                alice, "Principal/set", update={ALICE: {"email": "me@example.org"}}
            )
            assert directory_owned["notUpdated"][ALICE]["type"] == "forbidden"
            cleared = await ok(
                alice, "Principal/set", update={ALICE: {"timeZone": None, "description": None}}
            )
            assert cleared["updated"] == {ALICE: None}
            mine = (await ok(alice, "Principal/get", ids=[ALICE]))["list"][0]
            assert mine["timeZone"] is None and mine["description"] is None
            assert await error(alice, "Principal/set", ifInState="stale") == "stateMismatch"


async def test_jmaplib_reads_the_principals(tmp_path):
    """An unmodified client from the registries (jmaplib, RFC 9670 support) finds the
    principal account from the Session and queries and reads the Principals."""
    from jmap import sharing
    from jmap.auth import BasicAuth
    from jmap.client import JMAPClient

    async with running_server(write_config(tmp_path, MORE_PRINCIPALS)) as server:

        def read() -> tuple[Any, ...]:
            with JMAPClient.connect(
                server.url + "/.well-known/jmap", auth=BasicAuth("alice", "alice-password")
            ) as client:
                session = client.session
                where = sharing.principal_account(session, SALES)
                owner = sharing.owner_of(session, SALES)
                me = sharing.me(session, ALICE)
                with client.batch() as batch:
                    found = batch.principals.principal.query(filter={"type": "location"})
                    got = batch.principals.principal.get(ids=None)
                return where, owner, me, found.result.ids, got.result.items

        where, owner, me, found, principals = await trio.to_thread.run_sync(read)
        assert (where, owner, me) == (ALICE, SALES, ALICE)
        assert list(found) == [ROOM]
        by_id = {p.id: p for p in principals}
        assert by_id[ROOM].time_zone == "Europe/Paris"
        assert by_id[SALES].type == "group"
