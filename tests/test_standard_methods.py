"""The host's standard methods (RFC 8620 §5) for a type a test plugin declares, over real
HTTP, section by section: /get §5.1, /changes §5.2, /set §5.3, /copy §5.4, /query §5.5,
/queryChanges §5.6; and the isolation of accounts."""

from __future__ import annotations

import time
from typing import Any

import pytest

import jmap_host
from jmap_host import objectstore
from jmap_host.datatype import DataType, FilterCondition, Property, SetError
from jmap_host.testing import api, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
NOTES = "https://test.example/notes"
USING = [CORE, NOTES]


def check_title(value: str) -> None:
    if len(value) > 50:
        raise ValueError("at most 50 characters")


def on_create(ctx, record: dict[str, Any]) -> None:
    if record["title"] == "forbidden":
        # Write something first: the SetError must roll it back with the record (§5.3).
        ctx.db["notes_audit"].insert({"what": "should vanish"})
        raise SetError("forbidden", "no such titles")
    record["created"] = "2026-01-01T00:00:00Z"
    record["revision"] = 1


def on_update(ctx, old: dict[str, Any], new: dict[str, Any]) -> None:
    new["revision"] = old["revision"] + 1
    # A hook that writes another record of its own type (as a cascade would): a later
    # update of that record in the same /set must start from what the hook wrote.
    sibling = (new.get("meta") or {}).get("bumpRevisionOf")
    if sibling and sibling != (old.get("meta") or {}).get("bumpRevisionOf"):
        [other] = objectstore.read_records(ctx.db, NOTE, ctx.account.id, [sibling])
        other["revision"] += 10
        objectstore.update_record(ctx.db, NOTE, ctx.account.id, other, ["revision"])
    if new["title"] == "forbidden":
        # Write first, then refuse: the update must leave nothing behind either.
        ctx.db["notes_audit"].insert({"what": "should vanish"})
        raise SetError("forbidden", "no such titles")


NOTE = DataType(
    name="Memo",
    table="notes_note",
    properties=[
        Property("title", "String", required=True, sortable=True, validate=check_title),
        Property("done", "Boolean", default=False, sortable=True),
        Property("priority", "Int", default=0, sortable=True),
        Property("tags", "String[]", default=[]),
        Property("labels", "String[Boolean]", default={}),
        Property("meta", "Object", default={}),
        Property("parentId", "Id|null"),
        Property("kind", "String", default="note", immutable=True, sortable=True),
        Property("created", "UTCDate|null", server_set=True, sortable=True),
        Property("revision", "UnsignedInt", server_set=True, default=0),
    ],
    filters=[
        FilterCondition("text", "title", "contains"),
        FilterCondition("title", "title", "equals"),
        FilterCondition("done", "done"),
        FilterCondition("minPriority", "priority", "ge"),
        FilterCondition("tag", "tags", "hasItem"),
        FilterCondition("label", "labels", "hasKey"),
        FilterCondition("kind", "kind"),
        FilterCondition("hasParent", "parentId", "isNull"),
    ],
    on_create=on_create,
    on_update=on_update,
    query_limit=50,
)


class NotesPlugin:
    @jmap_host.hookimpl
    def register_capabilities(self, host):
        return [jmap_host.Capability(urn=NOTES, datatypes=[NOTE])]

    @jmap_host.hookimpl
    def migrations(self, host):
        import sqlite_utils

        audit = sqlite_utils.Migrations("notes-audit")

        @audit()
        def create_audit(db):
            db["notes_audit"].create({"what": str})

        return [audit]


class Client:
    """A thin helper: one JMAP call at a time, in the user's own account."""

    def __init__(self, http, account):
        self.http = http
        self.account = account

    async def call(self, name: str, account: str | None = None, **args: Any) -> list:
        body = {"accountId": account or self.account, **args}
        result = await api(self.http, [[name, body, "c"]], using=USING)
        return result["methodResponses"]

    async def one(self, name: str, **args: Any) -> dict[str, Any]:
        responses = await self.call(name, **args)
        assert len(responses) == 1, responses
        return responses[0][1] if responses[0][0] == name else {"error": responses[0][1]}

    async def create(self, **objects: dict[str, Any]) -> dict[str, str]:
        result = await self.one("Memo/set", create=objects)
        assert not result["notCreated"], result
        return {k: v["id"] for k, v in result["created"].items()}

    async def state(self) -> str:
        return (await self.one("Memo/get", ids=[]))["state"]


@pytest.fixture
async def server(tmp_path):
    config = write_config(
        tmp_path, "[jmap.protocol.get]\nmax-objects = 20\n[jmap.protocol.set]\nmax-objects = 20\n"
    )
    async with running_server(config, extra_plugins=[("notes", NotesPlugin())]) as running:
        yield running


@pytest.fixture
async def alice(server):
    async with server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        yield Client(http, session["primaryAccounts"][CORE])


async def test_type_appears_with_every_standard_method(server, alice):
    """RFC 8620 §5: Foo/get, /changes, /set, /copy, /query, /queryChanges all exist."""
    for method in ("get", "changes", "set", "copy", "query", "queryChanges"):
        assert f"Memo/{method}" in server.host.methods
    session = (await alice.http.get("/jmap/session")).json()
    assert NOTES in session["accounts"][alice.account]["accountCapabilities"]


# -- §5.1 /get ---------------------------------------------------------------------------


async def test_get(alice):
    ids = await alice.create(a={"title": "one"}, b={"title": "two"})
    everything = await alice.one("Memo/get", ids=None)
    assert {n["id"] for n in everything["list"]} == set(ids.values())
    assert everything["notFound"] == []
    one = await alice.one("Memo/get", ids=[ids["a"], ids["a"], "missing"], properties=["title"])
    assert one["list"] == [{"id": ids["a"], "title": "one"}]  # id always; duplicates once
    assert one["notFound"] == ["missing"]
    full = (await alice.one("Memo/get", ids=[ids["b"]]))["list"][0]
    assert full == {
        "id": ids["b"],
        "title": "two",
        "done": False,
        "priority": 0,
        "tags": [],
        "labels": {},
        "meta": {},
        "parentId": None,
        "kind": "note",
        "created": "2026-01-01T00:00:00Z",
        "revision": 1,
    }
    assert (await alice.one("Memo/get", ids=[]))["list"] == []
    bad = await alice.one("Memo/get", ids=None, properties=["title", "nope"])
    assert bad["error"]["type"] == "invalidArguments"
    bad = await alice.one("Memo/get", ids="x")
    assert bad["error"]["type"] == "invalidArguments"


async def test_get_answers_in_the_order_of_the_ids(alice):
    """RFC 8620 §5.1 lets /get answer in any order; the host answers in the order of
    ``ids`` (clients show records as they get them: a newest-first page must not come back
    oldest-first), and the page of a newest-first /query reads back newest first."""
    ids = await alice.create(**{f"n{i}": {"title": f"note {i}", "priority": i} for i in range(8)})
    wanted = [ids["n5"], ids["n1"], "missing", ids["n7"], ids["n0"], ids["n3"]]
    got = await alice.one("Memo/get", ids=wanted, properties=["title"])
    assert [n["id"] for n in got["list"]] == [i for i in wanted if i != "missing"]
    page = await alice.one(
        "Memo/query", sort=[{"property": "priority", "isAscending": False}], limit=5
    )
    got = await alice.one("Memo/get", ids=page["ids"], properties=["priority"])
    assert [n["priority"] for n in got["list"]] == [7, 6, 5, 4, 3]


async def test_get_limits(alice):
    """requestTooLarge past maxObjectsInGet, for explicit ids and for ids: null."""
    too_many = [f"id{i}" for i in range(21)]
    assert (await alice.one("Memo/get", ids=too_many))["error"]["type"] == "requestTooLarge"
    for batch in range(2):
        await alice.create(**{f"n{batch}{i}": {"title": f"n{i}"} for i in range(11)})
    assert (await alice.one("Memo/get", ids=None))["error"]["type"] == "requestTooLarge"


async def test_state_changes_only_when_data_changes(alice):
    first = await alice.state()
    assert await alice.state() == first
    ids = await alice.create(a={"title": "x"})
    second = await alice.state()
    assert second != first
    await alice.one("Memo/set", update={ids["a"]: {"done": True}})
    assert await alice.state() not in (first, second)


# -- §5.2 /changes -----------------------------------------------------------------------


async def test_changes_coalesce_per_record(alice):
    start = await alice.state()
    keep = await alice.create(a={"title": "stays"}, b={"title": "edited"}, c={"title": "gone"})
    middle = await alice.state()
    new = await alice.create(d={"title": "new then edited"}, e={"title": "new then gone"})
    await alice.one(
        "Memo/set",
        update={keep["b"]: {"done": True}, new["d"]: {"done": True}},
        destroy=[keep["c"], new["e"]],
    )
    since_start = await alice.one("Memo/changes", sinceState=start)
    assert set(since_start["created"]) == {keep["a"], keep["b"], new["d"]}
    assert since_start["updated"] == [] and since_start["destroyed"] == []
    assert since_start["hasMoreChanges"] is False
    assert since_start["newState"] == await alice.state()
    since_middle = await alice.one("Memo/changes", sinceState=middle)
    assert set(since_middle["created"]) == {new["d"]}  # created + updated → created
    assert since_middle["updated"] == [keep["b"]]
    assert since_middle["destroyed"] == [keep["c"]]  # created + destroyed → omitted


async def test_changes_in_pages_with_max_changes(alice):
    start = await alice.state()
    ids = await alice.create(**{f"k{i}": {"title": f"t{i}"} for i in range(7)})
    await alice.one("Memo/set", update={ids["k0"]: {"done": True}})
    seen: list[str] = []
    state = start
    for _ in range(10):
        page = await alice.one("Memo/changes", sinceState=state, maxChanges=3)
        ids_in_page = page["created"] + page["updated"] + page["destroyed"]
        assert len(ids_in_page) <= 3
        seen += ids_in_page
        state = page["newState"]
        if not page["hasMoreChanges"]:
            break
    # k0 shows up twice: created in the first page, updated in the last (allowed, §5.2).
    assert set(seen) == set(ids.values()) and len(seen) == len(ids) + 1
    assert state == await alice.state()


async def test_changes_errors(server, alice):
    assert (await alice.one("Memo/changes", sinceState="999"))["error"]["type"] == (
        "cannotCalculateChanges"
    )
    assert (await alice.one("Memo/changes", sinceState="bogus"))["error"]["type"] == (
        "cannotCalculateChanges"
    )
    bad = await alice.one("Memo/changes", sinceState="0", maxChanges=0)
    assert bad["error"]["type"] == "invalidArguments"
    # Compaction past the client's state: cannotCalculateChanges, never a wrong answer.
    old = await alice.state()
    await alice.create(a={"title": "x"})
    await server.host.store.write(lambda db: objectstore.compact_changes(db, int(time.time()) + 1))
    assert (await alice.one("Memo/changes", sinceState=old))["error"]["type"] == (
        "cannotCalculateChanges"
    )
    now = await alice.state()
    assert (await alice.one("Memo/changes", sinceState=now))["created"] == []


# -- §5.3 /set ---------------------------------------------------------------------------


async def test_create_returns_server_set_and_default_properties(alice):
    result = await alice.one("Memo/set", create={"a": {"title": "hi", "tags": ["x"]}})
    created = result["created"]["a"]
    assert created == {
        "id": created["id"],
        "done": False,
        "priority": 0,
        "labels": {},
        "meta": {},
        "parentId": None,
        "kind": "note",
        "created": "2026-01-01T00:00:00Z",
        "revision": 1,
    }
    assert result["oldState"] != result["newState"]


async def test_create_errors_name_the_properties(alice):
    result = await alice.one(
        "Memo/set",
        create={
            "unknown": {"title": "x", "colour": "red"},
            "server": {"title": "x", "revision": 5},
            "missing": {"done": True},
            "type": {"title": 5, "priority": "high"},
            "validator": {"title": "x" * 51},
            "badref": {"title": "x", "parentId": "#nope"},
            "hook": {"title": "forbidden"},
            "notobject": "x",
        },
    )
    errors = result["notCreated"]
    assert result["created"] is None
    assert errors["unknown"]["type"] == "invalidProperties"
    assert errors["unknown"]["properties"] == ["colour"]
    assert errors["server"]["properties"] == ["revision"]
    assert errors["missing"]["properties"] == ["title"]
    assert sorted(errors["type"]["properties"]) == ["priority", "title"]
    assert errors["validator"]["properties"] == ["title"]
    assert "50 characters" in errors["validator"]["description"]
    assert errors["badref"]["properties"] == ["parentId"]
    assert errors["hook"] == {"type": "forbidden", "description": "no such titles"}
    assert errors["notobject"]["type"] == "invalidProperties"
    assert result["oldState"] == result["newState"]


async def test_failed_record_leaves_nothing_behind(server, alice):
    """§5.3: each create is atomic: a hook's own writes go with a rejected record."""
    await alice.one("Memo/set", create={"a": {"title": "forbidden"}})
    rows = await server.host.store.read(lambda db: list(db["notes_audit"].rows))
    assert rows == []


async def test_an_update_that_wrote_and_failed_leaves_nothing_behind(server, alice, monkeypatch):
    """§5.3: each update is atomic too, also when the updates of a /set run without a
    savepoint each (standard.write_set): one that wrote and then failed sends the /set
    round again with savepoints, and the others' updates still happen, once."""
    ids = await alice.create(**{f"n{i}": {"title": f"t{i}"} for i in range(3)})
    a, b, c = ids["n0"], ids["n1"], ids["n2"]
    old_state = await alice.state()
    store, transactions = server.host.store, []
    write = store.write

    async def counted(fn):
        transactions.append(fn)
        return await write(fn)

    monkeypatch.setattr(store, "write", counted)
    result = await alice.one(
        "Memo/set",
        update={a: {"priority": 1}, b: {"title": "forbidden"}, c: {"priority": 3}},
        create={"d": {"title": "made once"}},
    )
    assert len(transactions) == 2  # the first rolled back, the second with savepoints
    monkeypatch.undo()
    assert result["notUpdated"] == {b: {"type": "forbidden", "description": "no such titles"}}
    assert result["updated"] == {a: {"revision": 2}, c: {"revision": 2}}
    assert result["oldState"] == old_state
    rows = await server.host.store.read(lambda db: list(db["notes_audit"].rows))
    assert rows == []
    got = {n["id"]: n for n in (await alice.one("Memo/get", ids=None))["list"]}
    assert [got[i]["priority"] for i in (a, b, c)] == [1, 0, 3]
    assert got[b]["title"] == "t1" and got[b]["revision"] == 1
    assert [n["title"] for n in got.values()].count("made once") == 1
    changes = await alice.one("Memo/changes", sinceState=old_state)
    assert sorted(changes["updated"]) == sorted([a, c]) and len(changes["created"]) == 1


async def test_creation_id_references(alice):
    """§5.3: "#creationId" in Id properties, update keys and destroy, across calls; §3.3
    createdIds."""
    response = await api(
        alice.http,
        [
            ["Memo/set", {"accountId": alice.account, "create": {"p": {"title": "parent"}}}, "0"],
            [
                "Memo/set",
                {
                    "accountId": alice.account,
                    "create": {"c": {"title": "child", "parentId": "#p"}},
                    "update": {"#p": {"title": "parent!"}},
                },
                "1",
            ],
            ["Memo/get", {"accountId": alice.account, "ids": ["#c"]}, "2"],
            ["Memo/set", {"accountId": alice.account, "destroy": ["#c"]}, "3"],
        ],
        using=USING,
        createdIds={},
    )
    responses = response["methodResponses"]
    parent = responses[0][1]["created"]["p"]["id"]
    child = responses[1][1]["created"]["c"]["id"]
    assert responses[1][1]["updated"] == {parent: {"revision": 2}}
    assert responses[2][1]["list"][0]["parentId"] == parent
    assert responses[3][1]["destroyed"] == [child]
    assert response["createdIds"] == {"p": parent, "c": child}


async def test_update_with_patches(alice):
    ids = await alice.create(a={"title": "t", "meta": {"x": {"y": 1}}, "labels": {"a": True}})
    note = ids["a"]
    result = await alice.one(
        "Memo/set",
        update={
            note: {
                "meta/x/y": 2,
                "meta/z": "new",
                "labels/b": True,
                "labels/a": None,
                "priority": 3,
            }
        },
    )
    assert result["updated"] == {note: {"revision": 2}}  # only what the patch did not say
    got = (await alice.one("Memo/get", ids=[note]))["list"][0]
    assert got["meta"] == {"x": {"y": 2}, "z": "new"}
    assert got["labels"] == {"b": True}
    assert got["priority"] == 3
    # null resets to the default (§5.3); a whole object is a valid patch.
    result = await alice.one("Memo/set", update={note: {"priority": None}})
    assert (await alice.one("Memo/get", ids=[note]))["list"][0]["priority"] == 0
    whole = (await alice.one("Memo/get", ids=[note]))["list"][0]
    result = await alice.one("Memo/set", update={note: {**whole, "title": "whole"}})
    assert result["notUpdated"] is None


async def test_update_many_sees_what_hooks_wrote(alice):
    """§5.3: the updates of one /set apply in order, each to the record as the earlier ones
    left it, also when the host reads the records ahead in one query."""
    ids = await alice.create(**{f"n{i}": {"title": f"t{i}"} for i in range(5)})
    a, b = ids["n0"], ids["n1"]
    result = await alice.one(
        "Memo/set",
        update={
            a: {"meta/bumpRevisionOf": b},  # the hook adds 10 to b's revision
            b: {"title": "after the hook"},  # so b goes 1 -> 11 -> 12, not 1 -> 2
            **{ids[f"n{i}"]: {"priority": i} for i in range(2, 5)},
        },
    )
    assert result["notUpdated"] is None
    assert result["updated"][b] == {"revision": 12}
    got = {n["id"]: n for n in (await alice.one("Memo/get", ids=list(ids.values())))["list"]}
    assert got[b]["revision"] == 12 and got[b]["title"] == "after the hook"
    assert [got[ids[f"n{i}"]]["priority"] for i in range(5)] == [0, 0, 2, 3, 4]
    assert all(got[ids[f"n{i}"]]["revision"] == 2 for i in (0, 2, 3, 4))


async def test_update_errors(alice):
    ids = await alice.create(a={"title": "t", "tags": ["x"]}, b={"title": "other"})
    note = ids["a"]
    result = await alice.one(
        "Memo/set",
        update={
            note: {"tags/0": "y"},
        },
    )
    assert result["notUpdated"][note]["type"] == "invalidPatch"  # never into arrays
    cases = {
        "prefix": ({"meta": {}, "meta/x": 1}, "invalidPatch"),
        "missing parent": ({"meta/a/b": 1}, "invalidPatch"),
        "server-set changed": ({"revision": 99}, "invalidProperties"),
        "immutable": ({"kind": "task"}, "invalidProperties"),
        "unknown": ({"colour": "red"}, "invalidProperties"),
        "type": ({"done": "yes"}, "invalidProperties"),
        "id": ({"id": "other"}, "invalidProperties"),
    }
    for what, (patch, kind) in cases.items():
        result = await alice.one("Memo/set", update={note: patch})
        assert result["notUpdated"][note]["type"] == kind, what
    same = await alice.one("Memo/set", update={note: {"revision": 1, "kind": "note", "id": note}})
    assert same["notUpdated"] is None  # server-set given with its current value is fine
    result = await alice.one("Memo/set", update={"nope": {"title": "x"}}, destroy=["nope2"])
    assert result["notUpdated"] == {"nope": {"type": "notFound"}}
    assert result["notDestroyed"] == {"nope2": {"type": "notFound"}}
    result = await alice.one("Memo/set", update={ids["b"]: {"title": "x"}}, destroy=[ids["b"]])
    assert result["notUpdated"] == {ids["b"]: {"type": "willDestroy"}}
    assert result["destroyed"] == [ids["b"]]


async def test_if_in_state_and_method_errors_change_nothing(alice):
    """§5.3 stateMismatch; §3.6.2: a method-level error leaves no change behind."""
    state = await alice.state()
    result = await alice.one("Memo/set", ifInState="12345", create={"a": {"title": "x"}})
    assert result["error"]["type"] == "stateMismatch"
    too_many = {f"k{i}": {"title": "x"} for i in range(21)}
    assert (await alice.one("Memo/set", create=too_many))["error"]["type"] == "requestTooLarge"
    assert (await alice.one("Memo/set", create=[1]))["error"]["type"] == "invalidArguments"
    assert await alice.state() == state
    assert (await alice.one("Memo/get", ids=None))["list"] == []
    ok = await alice.one("Memo/set", ifInState=state, create={"a": {"title": "x"}})
    assert ok["created"]


# -- §5.4 /copy --------------------------------------------------------------------------


async def test_copy_between_accounts(alice):
    session = (await alice.http.get("/jmap/session")).json()
    group = next(a for a, v in session["accounts"].items() if not v["isPersonal"])
    ids = await alice.create(a={"title": "share me", "priority": 2}, b={"title": "stay"})
    responses = await alice.call(
        "Memo/copy",
        fromAccountId=alice.account,
        account=group,
        create={"x": {"id": ids["a"], "title": "shared"}, "y": {"id": "missing"}},
        onSuccessDestroyOriginal=True,
    )
    copy_response, set_response = responses
    assert copy_response[0] == "Memo/copy"
    copied = copy_response[1]["created"]["x"]
    assert copied["id"] != ids["a"]
    assert copied["created"] == "2026-01-01T00:00:00Z" and copied["revision"] == 1
    assert copy_response[1]["notCreated"] == {"y": {"type": "notFound"}}
    assert set_response[0] == "Memo/set" and set_response[1]["destroyed"] == [ids["a"]]
    in_group = await alice.one("Memo/get", account=group, ids=[copied["id"]])
    assert in_group["list"][0]["title"] == "shared"
    assert in_group["list"][0]["priority"] == 2
    errors = {
        "same": await alice.one("Memo/copy", fromAccountId=alice.account, create={}),
        "from": await alice.one("Memo/copy", fromAccountId="nosuch", account=group, create={}),
        "state": await alice.one(
            "Memo/copy",
            fromAccountId=alice.account,
            account=group,
            ifFromInState="0",
            create={"z": {"id": ids["b"]}},
        ),
    }
    assert errors["same"]["error"]["type"] == "invalidArguments"
    assert errors["from"]["error"]["type"] == "fromAccountNotFound"
    assert errors["state"]["error"]["type"] == "stateMismatch"


# -- §5.5 /query -------------------------------------------------------------------------


async def make_titles(alice, titles: list[str]) -> dict[str, str]:
    ids = await alice.create(**{t: {"title": t, "priority": i} for i, t in enumerate(titles)})
    return {t: ids[t] for t in titles}


async def query_titles(alice, ids: dict[str, str], **args: Any) -> list[str]:
    result = await alice.one("Memo/query", **args)
    assert "error" not in result, result
    names = {v: k for k, v in ids.items()}
    return [names[i] for i in result["ids"]]


async def test_query_sort_and_collations(alice):
    ids = await make_titles(alice, ["b", "A", "é", "E", "a2"])
    asc = await query_titles(alice, ids, sort=[{"property": "title", "collation": "i;octet"}])
    assert asc == ["A", "E", "a2", "b", "é"]
    ascii_ = await query_titles(
        alice, ids, sort=[{"property": "title", "collation": "i;ascii-casemap"}]
    )
    assert ascii_ == ["A", "a2", "b", "E", "é"]
    unicode = await query_titles(
        alice, ids, sort=[{"property": "title", "collation": "i;unicode-casemap"}]
    )
    assert unicode[:3] == ["A", "a2", "b"] and set(unicode[3:]) == {"E", "é"}
    desc = await query_titles(alice, ids, sort=[{"property": "priority", "isAscending": False}])
    assert desc == ["a2", "E", "é", "A", "b"]
    # No sort: still stable between calls (§5.5).
    assert await query_titles(alice, ids) == await query_titles(alice, ids)


async def test_query_filters(alice):
    ids = await alice.create(
        a={"title": "Buy milk", "tags": ["home"], "priority": 1},
        b={"title": "Write report", "tags": ["work"], "priority": 3, "done": True},
        c={"title": "Milk the cow", "labels": {"farm": True}, "priority": 5},
    )
    names = {v: k for k, v in ids.items()}

    async def q(filter_):
        result = await alice.one("Memo/query", filter=filter_, sort=[{"property": "priority"}])
        assert "error" not in result, result
        return [names[i] for i in result["ids"]]

    assert await q({"text": "MILK"}) == ["a", "c"]
    assert await q({"tag": "work"}) == ["b"]
    assert await q({"label": "farm"}) == ["c"]
    assert await q({"done": True}) == ["b"]
    assert await q({"minPriority": 3}) == ["b", "c"]
    assert await q({"text": "milk", "minPriority": 3}) == ["c"]
    assert await q({"operator": "OR", "conditions": [{"tag": "home"}, {"done": True}]}) == [
        "a",
        "b",
    ]
    assert await q({"operator": "NOT", "conditions": [{"text": "milk"}]}) == ["b"]
    nested = {
        "operator": "AND",
        "conditions": [
            {"operator": "NOT", "conditions": [{"tag": "work"}]},
            {"operator": "OR", "conditions": [{"minPriority": 5}, {"title": "Buy milk"}]},
        ],
    }
    assert await q(nested) == ["a", "c"]
    assert await q({"hasParent": True}) == ["a", "b", "c"]
    errors = {
        "unknown condition": ({"colour": "red"}, "unsupportedFilter"),
        "wrong value type": ({"minPriority": "high"}, "invalidArguments"),
        "bad operator": ({"operator": "XOR", "conditions": []}, "invalidArguments"),
    }
    for what, (filter_, kind) in errors.items():
        result = await alice.one("Memo/query", filter=filter_)
        assert result["error"]["type"] == kind, what


async def test_query_limits_answer_the_errors_of_section_5_5(alice):
    """RFC 8620 §5.5: a filter or sort the server will not run is unsupportedFilter /
    unsupportedSort, never a 500: past MAX_FILTER_DEPTH operators deep, past
    MAX_FILTER_CONDITIONS conditions (an OR of thousands made SQLite's expression tree too
    large) and past MAX_SORT_COMPARATORS comparators (SQLite's ORDER BY term limit)."""
    from jmap_host import standard

    await alice.create(a={"title": "x"})
    flat = {"operator": "OR", "conditions": [{"title": f"t{i}"} for i in range(3000)]}
    err = (await alice.one("Memo/query", filter=flat))["error"]
    assert err["type"] == "unsupportedFilter", err
    at_limit = standard.MAX_FILTER_CONDITIONS - 1  # (the operator counts too)
    flat["conditions"] = [{"title": f"t{i}"} for i in range(at_limit - 1)] + [{"title": "x"}]
    assert len((await alice.one("Memo/query", filter=flat))["ids"]) == 1
    deep: dict[str, Any] = {"title": "x"}
    for _ in range(standard.MAX_FILTER_DEPTH):
        deep = {"operator": "AND", "conditions": [deep]}
    assert len((await alice.one("Memo/query", filter=deep))["ids"]) == 1
    deep = {"operator": "NOT", "conditions": [deep]}
    assert (await alice.one("Memo/query", filter=deep))["error"]["type"] == "unsupportedFilter"
    sort = [{"property": "title"}] * standard.MAX_SORT_COMPARATORS
    assert len((await alice.one("Memo/query", sort=sort))["ids"]) == 1
    err = (await alice.one("Memo/query", sort=[*sort, {"property": "done"}]))["error"]
    assert err["type"] == "unsupportedSort", err
    many = [{"property": "title"}] * 5000
    assert (await alice.one("Memo/query", sort=many))["error"]["type"] == "unsupportedSort"


async def test_query_windows(alice):
    titles = [f"t{i:02d}" for i in range(10)]
    ids = await make_titles(alice, titles)
    sort = [{"property": "title", "collation": "i;octet"}]
    page = await alice.one("Memo/query", sort=sort, position=2, limit=3, calculateTotal=True)
    assert [ids[t] for t in titles[2:5]] == page["ids"]
    assert page["position"] == 2 and page["total"] == 10
    assert "limit" not in page
    tail = await alice.one("Memo/query", sort=sort, position=-3)
    assert tail["ids"] == [ids[t] for t in titles[7:]] and tail["position"] == 7
    assert (await alice.one("Memo/query", sort=sort, position=-30))["position"] == 0
    beyond = await alice.one("Memo/query", sort=sort, position=20)
    assert beyond["ids"] == []
    anchored = await alice.one(
        "Memo/query", sort=sort, anchor=ids["t05"], anchorOffset=-1, limit=2, position=9
    )
    assert anchored["ids"] == [ids["t04"], ids["t05"]] and anchored["position"] == 4
    clamp = await alice.one("Memo/query", sort=sort, anchor=ids["t01"], anchorOffset=-5)
    assert clamp["position"] == 0
    missing = await alice.one("Memo/query", anchor="nope")
    assert missing["error"]["type"] == "anchorNotFound"
    clamped = await alice.one("Memo/query", limit=1000)
    assert clamped["limit"] == 50  # the server's maximum, announced (§5.5)
    assert (await alice.one("Memo/query", limit=-1))["error"]["type"] == "invalidArguments"
    for sort_ in (
        [{"property": "tags"}],
        [{"property": "nope"}],
        [{"property": "title", "collation": "i;klingon"}],
    ):
        assert (await alice.one("Memo/query", sort=sort_))["error"]["type"] == "unsupportedSort"
    assert (await alice.one("Memo/query", sort=[{"isAscending": True}]))["error"]["type"] == (
        "invalidArguments"
    )


# -- §5.6 /queryChanges ------------------------------------------------------------------


async def test_query_changes(alice):
    ids = await make_titles(alice, ["c", "a", "e"])
    sort = [{"property": "title", "collation": "i;octet"}]
    filter_ = {"done": False}
    before = await alice.one("Memo/query", sort=sort, filter=filter_)
    more = await make_titles(alice, ["b", "d"])
    await alice.one("Memo/set", update={ids["e"]: {"done": True}}, destroy=[ids["c"]])
    changes = await alice.one(
        "Memo/queryChanges",
        sort=sort,
        filter=filter_,
        sinceQueryState=before["queryState"],
        calculateTotal=True,
    )
    assert changes["oldQueryState"] == before["queryState"]
    assert changes["newQueryState"] == await alice.state()
    assert set(changes["removed"]) == {ids["c"], ids["e"]}
    assert changes["added"] == [{"id": more["b"], "index": 1}, {"id": more["d"], "index": 2}]
    assert changes["total"] == 3
    # Applying the changes to the old list gives the new one (§5.6's algorithm).
    cached = [i for i in before["ids"] if i not in changes["removed"]]
    for item in changes["added"]:
        cached.insert(item["index"], item["id"])
    after = await alice.one("Memo/query", sort=sort, filter=filter_)
    assert cached == after["ids"]
    too_many = await alice.one(
        "Memo/queryChanges",
        sort=sort,
        filter=filter_,
        sinceQueryState=before["queryState"],
        maxChanges=2,
    )
    assert too_many["error"]["type"] == "tooManyChanges"
    stale = await alice.one("Memo/queryChanges", sinceQueryState="nope")
    assert stale["error"]["type"] == "cannotCalculateChanges"


async def test_query_changes_on_immutable_properties_ignore_updates(alice):
    """With filter and sort on immutable properties only, an update cannot move a record,
    so it is neither removed nor added (§5.6)."""
    ids = await make_titles(alice, ["x", "y"])
    sort = [{"property": "kind"}]
    before = await alice.one("Memo/query", sort=sort, filter={"kind": "note"})
    await alice.one("Memo/set", update={ids["x"]: {"title": "renamed"}})
    changes = await alice.one(
        "Memo/queryChanges",
        sort=sort,
        filter={"kind": "note"},
        sinceQueryState=before["queryState"],
    )
    assert changes["removed"] == [] and changes["added"] == []


# -- accounts never see each other -------------------------------------------------------


async def test_other_accounts_ids_look_like_missing_ids(server, alice):
    """Every method, given another account's ids, answers exactly as for ids that do not
    exist; another user's account id is accountNotFound (§3.6.2)."""
    ids = await alice.create(a={"title": "secret"})
    async with server.client("bob") as http:
        bob_session = (await http.get("/jmap/session")).json()
        bob = Client(http, bob_session["primaryAccounts"][CORE])
        for their, missing in ((ids["a"], "xnotthere00000000"),):
            got_theirs = await bob.one("Memo/get", ids=[their])
            got_missing = await bob.one("Memo/get", ids=[missing])
            assert got_theirs["notFound"] == [their] and got_missing["notFound"] == [missing]
            for args in ({"update": {"ID": {"title": "x"}}}, {"destroy": ["ID"]}):

                def fill(value, i):
                    if isinstance(value, dict):
                        return {k.replace("ID", i): v for k, v in value.items()}
                    return [i]

                theirs = await bob.one("Memo/set", **{k: fill(v, their) for k, v in args.items()})
                mine = await bob.one("Memo/set", **{k: fill(v, missing) for k, v in args.items()})
                key = "notUpdated" if "update" in args else "notDestroyed"
                assert theirs[key][their] == mine[key][missing] == {"type": "notFound"}
            for anchor in (their, missing):
                assert (await bob.one("Memo/query", anchor=anchor))["error"]["type"] == (
                    "anchorNotFound"
                )
            bob_group = await bob.one(
                "Memo/copy", fromAccountId=alice.account, create={"x": {"id": their}}
            )
            assert bob_group["error"]["type"] == "fromAccountNotFound"
        for method in ("Memo/get", "Memo/set", "Memo/query", "Memo/changes"):
            answer = await bob.one(method, account=alice.account, sinceState="0")
            assert answer["error"]["type"] == "accountNotFound", method
        assert (await bob.one("Memo/query"))["ids"] == []


async def test_change_log_retention_is_configurable(tmp_path):
    """§5.2: states older than storage.change-retention get cannotCalculateChanges; the
    server compacts at start-up and hourly."""
    from jmap_host.server import compact_change_log
    from jmap_host.testing import BASE_CONFIG

    def with_retention(value: str) -> str:
        return BASE_CONFIG.replace("[storage]\n", f'[storage]\nchange-retention = "{value}"\n')

    config = write_config(tmp_path, base=with_retention("2d"))
    host = jmap_host.load_host(config, extra_plugins=[("notes", NotesPlugin())])
    assert host.config.data["storage"]["change-retention"] == 2 * 86400
    async with running_server(host) as running, running.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        alice = Client(http, session["primaryAccounts"][CORE])
        old = await alice.state()
        await alice.create(a={"title": "x"})
        # Pretend three days pass: the row is now older than the retention.
        await running.host.store.write(
            lambda db: db.execute("UPDATE host_change SET at = at - 3 * 86400")
        )
        import trio

        with trio.move_on_after(0.5):
            await compact_change_log(running.host)
        answer = await alice.one("Memo/changes", sinceState=old)
        assert answer["error"]["type"] == "cannotCalculateChanges"
    bad = write_config(tmp_path, base=with_retention("1h"), name="bad.toml")
    with pytest.raises(jmap_host.ConfigError, match="change-retention: must be at least 1d"):
        jmap_host.load_host(bad)


def personal_only(account, principal, operation: str) -> bool:
    """Readable in every account, writable only in the user's own."""
    return operation == "read" or account.is_personal


PREFS = DataType(
    name="Prefs",
    table="notes_prefs",
    properties=[Property("theme", "String", default="light")],
    singleton=True,
    access=personal_only,
)
DIARY = DataType(
    name="Diary",
    table="notes_diary",
    properties=[Property("text", "String", default="")],
    access=lambda account, principal, operation: account.is_personal,
)


class RulesPlugin:
    @jmap_host.hookimpl
    def register_capabilities(self, host):
        return [jmap_host.Capability(urn="https://test.example/rules", datatypes=[PREFS, DIARY])]

    @jmap_host.hookimpl
    def account_provisioned(self, host, account):
        # A singleton exists from the start; clients only ever update it (§5.3 singleton).
        from jmap_host import objectstore as store

        def create(db):
            record = {"id": "singleton", "theme": "light"}
            store.insert_record(db, PREFS, account.id, record)
            store.record_change(db, account.id, "Prefs", "singleton", "created")

        return host.store.write(create)


async def test_singleton_and_access_rules(tmp_path):
    """§5.3 "singleton" SetError; a type's access rule gives "forbidden" (§3.6.2, §5.3)."""
    config = write_config(tmp_path)
    async with running_server(config, extra_plugins=[("rules", RulesPlugin())]) as server:
        async with server.client("alice") as http:
            session = (await http.get("/jmap/session")).json()
            own = session["primaryAccounts"][CORE]
            group = next(a for a, v in session["accounts"].items() if not v["isPersonal"])
            using = [CORE, "https://test.example/rules"]

            async def call(name, **args):
                result = await api(http, [[name, args, "c"]], using=using)
                return result["methodResponses"][0][1]

            prefs = await call("Prefs/get", accountId=own, ids=None)
            assert prefs["list"] == [{"id": "singleton", "theme": "light"}]
            result = await call("Prefs/set", accountId=own, create={"x": {}}, destroy=["singleton"])
            assert result["notCreated"]["x"]["type"] == "singleton"
            assert result["notDestroyed"]["singleton"]["type"] == "singleton"
            result = await call("Prefs/set", accountId=own, update={"singleton": {"theme": "dark"}})
            assert result["updated"] == {"singleton": None}
            in_group = await call(
                "Prefs/set", accountId=group, update={"singleton": {"theme": "x"}}
            )
            assert in_group["notUpdated"]["singleton"]["type"] == "forbidden"
            assert (await call("Prefs/get", accountId=group, ids=None))["list"]
            assert (await call("Diary/get", accountId=group, ids=None))["type"] == "forbidden"
            assert (await call("Diary/query", accountId=group))["type"] == "forbidden"
            created = await call("Diary/set", accountId=group, create={"d": {"text": "x"}})
            assert created["notCreated"]["d"]["type"] == "forbidden"
            mine = await call("Diary/set", accountId=own, create={"d": {"text": "dear diary"}})
            assert mine["created"]["d"]["id"]


def test_declared_indexes_name_declared_properties():
    """DataType.indexes (plugin guide): checked when the type is declared, not at start-up."""
    props = [Property("title", "String"), Property("at", "UTCDate", sortable=True)]
    DataType(name="Ok", table="notes_ok", properties=props, indexes=[("-at", "id", "title")])
    with pytest.raises(ValueError, match="index on unknown property"):
        DataType(name="Bad", table="notes_bad", properties=props, indexes=[("-nope", "id")])


# -- DataType.update_reads: an update reads only what it needs ------------------------------

seen_by_tally: list[tuple[set[str], set[str]]] = []


def tally(ctx, old: dict[str, Any], new: dict[str, Any]) -> None:
    seen_by_tally.append((set(old), set(new)))
    if new["count"] != old["count"]:
        new["total"] = old["total"] + new["count"]


TALLY = DataType(
    name="Tally",
    table="notes_tally",
    properties=[
        Property("title", "String", default=""),
        Property("note", "String", default=""),
        Property("count", "UnsignedInt", default=0),
        Property("total", "UnsignedInt", server_set=True, default=0),
    ],
    on_update=tally,
    update_reads=("count", "total"),
)


class TallyPlugin:
    @jmap_host.hookimpl
    def register_capabilities(self, host):
        return [jmap_host.Capability(urn="https://test.example/tally", datatypes=[TALLY])]


async def test_update_reads_only_what_the_hook_and_the_patch_need(tmp_path):
    """With update_reads the hook sees id, those properties and the patched ones (read
    ahead for many updates, or one by one); what it does not see is kept as stored."""
    config = write_config(tmp_path)
    async with running_server(config, extra_plugins=[("tally", TallyPlugin())]) as server:
        async with server.client("alice") as http:
            session = (await http.get("/jmap/session")).json()
            own = session["primaryAccounts"][CORE]

            async def call(name, **args):
                result = await api(
                    http, [[name, args, "c"]], using=[CORE, "https://test.example/tally"]
                )
                return result["methodResponses"][0][1]

            made = await call(
                "Tally/set",
                accountId=own,
                create={f"t{i}": {"title": f"t{i}", "note": "keep"} for i in range(3)},
            )
            ids = [made["created"][f"t{i}"]["id"] for i in range(3)]
            seen_by_tally.clear()
            many = await call("Tally/set", accountId=own, update={i: {"count": 2} for i in ids})
            assert many["updated"] == {i: {"total": 2} for i in ids}
            one = await call("Tally/set", accountId=own, update={ids[0]: {"title": "new"}})
            assert one["updated"] == {ids[0]: None}
            narrow, patched = {"id", "count", "total"}, {"id", "count", "total", "title"}
            expected = [(narrow, narrow)] * 3 + [(patched, patched)]
            assert seen_by_tally == expected
            got = {t["id"]: t for t in (await call("Tally/get", accountId=own, ids=ids))["list"]}
            assert got[ids[0]] == {
                "id": ids[0],
                "title": "new",
                "note": "keep",
                "count": 2,
                "total": 2,
            }
            assert all(got[i]["note"] == "keep" and got[i]["total"] == 2 for i in ids)


def test_update_reads_name_declared_properties():
    props = [Property("title", "String")]
    with pytest.raises(ValueError, match="update_reads names unknown property"):
        DataType(name="Bad", table="notes_bad", properties=props, update_reads=("nope",))
