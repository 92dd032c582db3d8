"""Sharing a Mailbox (RFC 9670 §4 through the host's sharing service; RFC 8621 §2
``myRights``) at the wire: alice shares folders of her account with bob, with each set of
rights, and bob sees and changes exactly what those rights say, and nothing else exists for
him; the shared account in his Session (RFC 9670 §1.4, §1.5.2), ShareNotifications (§3)
with push, revoking, the checks of ``shareWith`` and group accounts still working."""

from __future__ import annotations

import json
from typing import Any

import trio

from jmap_host import account_id_for
from jmap_host.testing import AccountClient, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
PRINCIPALS = "urn:ietf:params:jmap:principals"
OWNER = "urn:ietf:params:jmap:principals:owner"
USING = [CORE, MAIL, PRINCIPALS]
ALICE, BOB, SALES = (account_id_for(n) for n in ("alice", "bob", "sales"))
CAROL = account_id_for("carol")
CAROL_IN_SALES = """
[[directory."memory".principals]]
name = "carol"
secret = "carol-password"
email = ["carol@example.org"]
member-of = ["sales"]
"""
RIGHTS = ("mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords",
          "mayCreateChild", "mayRename", "mayDelete", "maySubmit")  # fmt: skip


def rights(*names: str) -> dict[str, bool]:
    return {r: r in names for r in RIGHTS}


class Client(AccountClient):
    def __init__(self, http: Any, account: str):
        super().__init__(http, account, USING)

    async def upload(self, data: bytes, media: str = "message/rfc822",
                     account: str | None = None) -> str:  # fmt: skip
        return await super().upload(data, media, account)


def message(subject: str) -> bytes:
    return (
        f"From: dana@example.net\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n\r\nAbout {subject}.\r\n"
    ).encode()


class World:
    """alice's account with Inbox, Projects, Projects/Plans and Private, a message in
    each (and one in both Projects and Inbox); bob's view of it."""

    def __init__(self, server: Any):
        self.server = server

    async def __aenter__(self) -> World:
        self.alice_http = self.server.client("alice")
        self.bob_http = self.server.client("bob")
        await self.alice_http.__aenter__()
        await self.bob_http.__aenter__()
        self.alice = Client(self.alice_http, ALICE)
        self.bob = Client(self.bob_http, ALICE)  # bob, in alice's account
        self.bob_own = Client(self.bob_http, BOB)
        await self.bob_own.session()  # bob's account exists (provisioned)
        boxes = (await self.alice.ok("Mailbox/get", ids=None))["list"]
        self.inbox = next(m["id"] for m in boxes if m["role"] == "inbox")
        made = await self.alice.ok(
            "Mailbox/set",
            create={"p": {"name": "Projects"}, "x": {"name": "Private"}},
        )
        self.projects = made["created"]["p"]["id"]
        self.private = made["created"]["x"]["id"]
        plans = await self.alice.ok(
            "Mailbox/set", create={"c": {"name": "Plans", "parentId": self.projects}}
        )
        self.plans = plans["created"]["c"]["id"]
        self.emails: dict[str, str] = {}
        for key, boxes_ in (
            ("project", [self.projects]),
            ("plan", [self.plans]),
            ("private", [self.private]),
            ("inbox", [self.inbox]),
            ("both", [self.projects, self.inbox]),
        ):
            blob = await self.alice.upload(message(key))
            spec = {"blobId": blob, "mailboxIds": dict.fromkeys(boxes_, True)}
            done = await self.alice.ok("Email/import", emails={"e": spec})
            self.emails[key] = done["created"]["e"]["id"]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.alice_http.__aexit__(*exc)
        await self.bob_http.__aexit__(*exc)

    async def share(self, mailbox: str, grant: dict[str, dict[str, bool]] | None) -> dict:
        return await self.alice.ok("Mailbox/set", update={mailbox: {"shareWith": grant}})


async def test_read_only_share(tmp_path):
    """mayReadItems alone: the account is read-only in bob's Session; bob sees the shared
    Mailbox (with his myRights, no shareWith, no hidden parent) and its Emails, not a
    byte more: other Mailboxes, Emails, Threads and blobs answer as if they did not
    exist; what he cannot do is accountReadOnly."""
    async with running_server(write_config(tmp_path)) as server, World(server) as w:
        before = (await w.bob_own.session())["accounts"]
        assert ALICE not in before
        shared = await w.share(w.projects, {BOB: {"mayReadItems": True}})
        assert shared["updated"][w.projects] == {"shareWith": {BOB: rights("mayReadItems")}}
        session = await w.bob_own.session()
        account = session["accounts"][ALICE]
        assert account["isPersonal"] is False and account["isReadOnly"] is True
        caps = account["accountCapabilities"]
        assert MAIL in caps and CORE in caps
        assert "urn:ietf:params:jmap:submission" not in caps
        assert "urn:ietf:params:jmap:vacationresponse" not in caps
        assert caps[OWNER] == {"accountIdForPrincipal": BOB, "principalId": ALICE}
        assert caps[MAIL]["mayCreateTopLevelMailbox"] is False

        boxes = (await w.bob.ok("Mailbox/get", ids=None))["list"]
        assert [m["id"] for m in boxes] == [w.projects]
        [box] = boxes
        assert box["myRights"] == rights("mayReadItems")
        assert box["shareWith"] is None and box["parentId"] is None
        assert box["totalEmails"] == 2
        assert (await w.bob.ok("Mailbox/get", ids=[w.inbox, w.plans]))["notFound"] == [
            w.inbox, w.plans,
        ]  # fmt: skip
        assert (await w.bob.ok("Mailbox/query"))["ids"] == [w.projects]

        found = await w.bob.ok("Email/query", sort=[{"property": "subject"}])
        assert found["ids"] == [w.emails["both"], w.emails["project"]]
        assert found["canCalculateChanges"] is False
        inbox_query = await w.bob.ok("Email/query", filter={"inMailbox": w.inbox})
        assert inbox_query["ids"] == []  # a Mailbox he cannot see is none
        other = await w.bob.ok("Email/query", filter={"inMailboxOtherThan": [w.projects]})
        assert other["ids"] == []  # alice's Inbox does not count for him
        got = await w.bob.ok(
            "Email/get",
            ids=[w.emails["both"], w.emails["inbox"], w.emails["private"]],
            properties=["mailboxIds", "subject", "blobId", "threadId"],
        )
        assert [e["id"] for e in got["list"]] == [w.emails["both"]]
        assert got["list"][0]["mailboxIds"] == {w.projects: True}  # not alice's Inbox
        assert got["notFound"] == [w.emails["inbox"], w.emails["private"]]
        thread = got["list"][0]["threadId"]
        assert (await w.bob.ok("Thread/get", ids=[thread]))["list"][0]["emailIds"] == [
            w.emails["both"]
        ]
        snippets = await w.bob.ok(
            "SearchSnippet/get", filter={"text": "about"},
            emailIds=[w.emails["project"], w.emails["inbox"]],
        )  # fmt: skip
        assert [s["emailId"] for s in snippets["list"]] == [w.emails["project"]]
        assert snippets["notFound"] == [w.emails["inbox"]]

        blob = got["list"][0]["blobId"]
        assert (await w.bob_http.get(f"/jmap/download/{ALICE}/{blob}/m.eml")).status_code == 200
        own = await w.alice.ok("Email/get", ids=[w.emails["inbox"]], properties=["blobId"])
        hidden = own["list"][0]["blobId"]
        assert (await w.bob_http.get(f"/jmap/download/{ALICE}/{hidden}/m.eml")).status_code == 404
        reply = await w.bob_http.post("/jmap/api", json={
            "using": [*USING, "urn:ietf:params:jmap:blob"],
            "methodCalls": [["Blob/get", {"accountId": ALICE, "ids": [hidden, blob],
                                          "properties": ["size"]}, "b"]],
        })  # fmt: skip
        blob_get = reply.json()["methodResponses"][0][1]
        assert [b["id"] for b in blob_get["list"]] == [blob]
        assert blob_get["notFound"] == [hidden]

        write = await w.bob.call(
            "Email/set", update={w.emails["project"]: {"keywords/$seen": True}}
        )
        assert write["error"]["type"] == "accountReadOnly"
        for name in ("Identity/get", "VacationResponse/get"):
            answer = await w.bob.call(name, ids=None)
            assert answer["error"]["type"] in ("accountNotSupportedByMethod", "unknownMethod")


async def test_seen_and_keyword_rights(tmp_path):
    """RFC 8621 §2: maySetSeen lets bob change $seen only, maySetKeywords other keywords,
    each only when he holds it for every Mailbox of the Email; nothing else of an Email
    changes."""
    async with running_server(write_config(tmp_path)) as server, World(server) as w:
        await w.share(w.projects, {BOB: {"mayReadItems": True, "maySetSeen": True}})
        project, both = w.emails["project"], w.emails["both"]
        result = await w.bob.ok(
            "Email/set",
            update={
                project: {"keywords/$seen": True},
                both: {"keywords/$seen": True},  # also in alice's Inbox: not in all of them
            },
        )
        assert project in result["updated"]
        assert result["notUpdated"][both]["type"] == "forbidden"
        flagged = await w.bob.ok("Email/set", update={project: {"keywords/$flagged": True}})
        assert flagged["notUpdated"][project]["type"] == "forbidden"
        await w.share(w.projects, {BOB: rights("mayReadItems", "maySetKeywords")})
        flagged = await w.bob.ok("Email/set", update={project: {"keywords/$flagged": True}})
        assert project in flagged["updated"]
        seen = await w.bob.ok("Email/set", update={project: {"keywords/$seen": None}})
        assert seen["notUpdated"][project]["type"] == "forbidden"
        mine = await w.alice.ok("Email/get", ids=[project], properties=["keywords"])
        assert mine["list"][0]["keywords"] == {"$seen": True, "$flagged": True}


async def test_filing_moving_and_removing(tmp_path):
    """mayAddItems and mayRemoveItems: bob files mail into a shared Mailbox (import,
    create, move) and takes it out; a Mailbox he cannot see is no Mailbox to him, and
    alice's memberships he cannot see survive his changes; destroying needs mayRemoveItems
    in every Mailbox of the Email."""
    async with running_server(write_config(tmp_path)) as server, World(server) as w:
        await w.share(w.projects, {BOB: rights("mayReadItems", "mayAddItems", "mayRemoveItems")})
        await w.share(w.plans, {BOB: rights("mayReadItems", "mayAddItems")})
        both, project = w.emails["both"], w.emails["project"]
        session = await w.bob_own.session()
        assert session["accounts"][ALICE]["isReadOnly"] is False
        # Moving: Projects -> Plans, keeping alice's Inbox membership he cannot see.
        moved = await w.bob.ok("Email/set", update={both: {"mailboxIds": {w.plans: True}}})
        assert both in moved["updated"], moved
        theirs = await w.alice.ok("Email/get", ids=[both], properties=["mailboxIds"])
        assert theirs["list"][0]["mailboxIds"] == {w.plans: True, w.inbox: True}
        # Out of Plans he may not remove.
        back = await w.bob.ok("Email/set", update={both: {"mailboxIds": {w.projects: True}}})
        assert back["notUpdated"][both]["type"] == "forbidden"
        # Into a Mailbox he cannot see: no such Mailbox.
        hidden = await w.bob.ok("Email/set", update={project: {f"mailboxIds/{w.private}": True}})
        assert hidden["notUpdated"][project]["type"] == "invalidProperties"
        # Filing new mail: import and create into Projects; not into alice's Inbox.
        blob = await w.bob.upload(message("filed by bob"), account=ALICE)
        imported = await w.bob.ok(
            "Email/import",
            emails={
                "ok": {"blobId": blob, "mailboxIds": {w.projects: True}},
                "inbox": {"blobId": blob, "mailboxIds": {w.inbox: True}},
            },
        )
        assert "ok" in imported["created"]
        assert imported["notCreated"]["inbox"]["type"] == "invalidProperties"
        draft = {"mailboxIds": {w.projects: True}, "subject": "note",
                 "bodyValues": {"1": {"value": "hi"}}, "textBody": [{"partId": "1",
                 "type": "text/plain"}]}  # fmt: skip
        created = await w.bob.ok("Email/set", create={"d": draft})
        assert "d" in created["created"], created
        # Destroying: only what is in no Mailbox but those he may remove from.
        gone = await w.bob.ok("Email/set", destroy=[project, both, w.emails["inbox"]])
        assert gone["destroyed"] == [project]
        assert gone["notDestroyed"][both]["type"] == "forbidden"
        assert gone["notDestroyed"][w.emails["inbox"]]["type"] == "notFound"


async def test_mailbox_rights_create_rename_delete_and_subscribe(tmp_path):
    """mayCreateChild, mayRename and mayDelete on the Mailbox itself; a child bob creates
    is shared with him as its parent is; only the owner changes shareWith (mail defines no
    right to share further); isSubscribed is bob's own (RFC 9670 §4), and an account with
    nothing subscribed leaves his Session (§1.4) but stays usable."""
    async with running_server(write_config(tmp_path)) as server, World(server) as w:
        # (maySetSeen: an account with nothing but reading is read-only, accountReadOnly.)
        await w.share(w.projects, {BOB: rights("mayReadItems", "maySetSeen")})
        denied = await w.bob.ok(
            "Mailbox/set",
            create={"c": {"name": "Bob's", "parentId": w.projects}},
            update={w.projects: {"name": "Renamed"}},
        )
        assert denied["notCreated"]["c"]["type"] == "forbidden"
        assert denied["notUpdated"][w.projects]["type"] == "forbidden"
        kept = await w.bob.ok("Mailbox/set", destroy=[w.projects])
        assert kept["notDestroyed"][w.projects]["type"] == "forbidden"
        top = await w.bob.ok("Mailbox/set", create={"t": {"name": "Top"}})
        assert top["notCreated"]["t"]["type"] == "forbidden"

        await w.share(w.projects, {BOB: rights("mayReadItems", "mayCreateChild", "mayRename")})
        made = await w.bob.ok(
            "Mailbox/set",
            create={"c": {"name": "Bob's", "parentId": w.projects}},
            update={w.projects: {"name": "Renamed"}},
        )
        child = made["created"]["c"]["id"]
        assert w.projects in made["updated"]
        view = (await w.bob.ok("Mailbox/get", ids=[child]))["list"][0]
        assert view["myRights"] == rights("mayReadItems", "mayCreateChild", "mayRename")
        assert view["parentId"] == w.projects
        assert (await w.alice.ok("Mailbox/get", ids=[w.projects]))["list"][0]["name"] == "Renamed"
        # shareWith stays the owner's.
        reshare = await w.bob.ok(
            "Mailbox/set", update={w.projects: {f"shareWith/{SALES}": {"mayReadItems": True}}}
        )
        assert reshare["notUpdated"][w.projects]["type"] == "forbidden"

        await w.share(w.projects, {BOB: rights("mayReadItems", "mayDelete")})
        await w.share(child, {BOB: rights("mayReadItems", "mayDelete")})
        gone = await w.bob.ok("Mailbox/set", destroy=[child])
        assert gone["destroyed"] == [child]

        # isSubscribed is per user.
        await w.bob.ok("Mailbox/set", update={w.projects: {"isSubscribed": False}})
        assert (await w.bob.ok("Mailbox/get", ids=[w.projects]))["list"][0]["isSubscribed"] is False
        assert (await w.alice.ok("Mailbox/get", ids=[w.projects]))["list"][0][
            "isSubscribed"
        ] is True
        assert ALICE not in (await w.bob_own.session())["accounts"]
        assert (await w.bob.ok("Mailbox/get", ids=None))["list"][0]["id"] == w.projects
        await w.bob.ok("Mailbox/set", update={w.projects: {"isSubscribed": True}})
        assert ALICE in (await w.bob_own.session())["accounts"]


async def test_share_with_is_checked(tmp_path):
    """RFC 9670 §4: keys are Principals, never the owner; values the type's rights, stored
    with every right named; a principal left with no right is no longer in the map."""
    async with running_server(write_config(tmp_path)) as server, World(server) as w:
        for bad in (
            {"nobody": {"mayReadItems": True}},
            {ALICE: {"mayReadItems": True}},
            {BOB: {"mayFly": True}},
            {BOB: {"mayReadItems": "yes"}},
            [BOB],
        ):
            result = await w.alice.ok("Mailbox/set", update={w.projects: {"shareWith": bad}})
            assert result["notUpdated"][w.projects]["type"] == "invalidProperties", bad
        both = {BOB: {"mayReadItems": True}, SALES: {"mayAddItems": True}}
        await w.share(w.projects, both)
        stored = (await w.alice.ok("Mailbox/get", ids=[w.projects]))["list"][0]
        assert stored["shareWith"] == {BOB: rights("mayReadItems"), SALES: rights("mayAddItems")}
        assert stored["myRights"] == rights(*RIGHTS)
        patched = await w.alice.ok("Mailbox/set", update={w.projects: {f"shareWith/{SALES}": None}})
        assert w.projects in patched["updated"]
        nothing = await w.alice.ok(
            "Mailbox/set", update={w.projects: {f"shareWith/{BOB}/mayReadItems": False}}
        )
        assert w.projects in nothing["updated"]
        assert (await w.alice.ok("Mailbox/get", ids=[w.projects]))["list"][0]["shareWith"] is None


async def test_revoking_notifications_and_push(tmp_path):
    """A revoked share leaves bob's Session and every method answers accountNotFound;
    each change of his rights is a ShareNotification in his own account (RFC 9670 §3:
    get, changes, query with its filters, queryChanges, set destroy only), and push tells
    him; /changes across a change of what he sees cannot be calculated."""
    async with running_server(write_config(tmp_path)) as server, World(server) as w:
        url = "/jmap/eventsource/?types=*&closeafter=no&ping=0"
        async with server.client("bob") as listener, listener.stream("GET", url) as stream:
            await trio.sleep(0.1)
            await w.share(w.projects, {BOB: {"mayReadItems": True}})
            with trio.fail_after(5):
                changed = await next_change(stream, BOB)
            assert "ShareNotification" in changed
        # A stream opened now follows alice's account too, but only its shared types.
        async with server.client("bob") as listener, listener.stream("GET", url) as stream:
            await trio.sleep(0.1)
            blob = await w.alice.upload(message("pushed"))
            await w.alice.ok(
                "Email/import", emails={"e": {"blobId": blob, "mailboxIds": {w.projects: True}}}
            )
            with trio.fail_after(5):
                heard = await next_change(stream, ALICE)
            assert "Email" in heard
            assert set(heard) <= {"Email", "Thread", "Mailbox"}  # no Quota, no EmailDelivery

        state = (await w.bob.ok("Email/get", ids=[]))["state"]
        await w.share(w.plans, {BOB: {"mayReadItems": True}})
        stale = await w.bob.call("Email/changes", sinceState=state)
        assert stale["error"]["type"] == "cannotCalculateChanges"
        fresh = (await w.bob.ok("Email/get", ids=[]))["state"]
        blob = await w.alice.upload(message("later"))
        for box in (w.plans, w.private):
            await w.alice.ok(
                "Email/import", emails={"e": {"blobId": blob, "mailboxIds": {box: True}}}
            )
        changes = await w.bob.ok("Email/changes", sinceState=fresh)
        assert len(changes["created"]) == 1  # the Plans one, not the Private one

        await w.share(w.projects, None)
        await w.share(w.plans, None)
        assert ALICE not in (await w.bob_own.session())["accounts"]
        assert (await w.bob.call("Mailbox/get", ids=None))["error"]["type"] == "accountNotFound"

        notes = await w.bob_own.ok("ShareNotification/get", ids=None)
        assert len(notes["list"]) == 4
        first = min(notes["list"], key=lambda n: (n["created"], n["name"] != "Projects"))
        assert first["objectType"] == "Mailbox" and first["objectAccountId"] == ALICE
        assert first["changedBy"] == {
            "name": "Alice Example", "email": "alice@example.org", "principalId": ALICE,
        }  # fmt: skip
        revoked = [n for n in notes["list"] if n["newRights"] is None]
        assert {n["objectId"] for n in revoked} == {w.projects, w.plans}
        assert all(n["oldRights"] == rights("mayReadItems") for n in revoked)
        query = await w.bob_own.ok(
            "ShareNotification/query",
            filter={"objectType": "Mailbox", "objectAccountId": ALICE,
                    "after": "2000-01-01T00:00:00Z"},
            sort=[{"property": "created"}], calculateTotal=True,
        )  # fmt: skip
        assert query["total"] == 4
        assert (await w.bob_own.ok("ShareNotification/query", filter={"objectType": "Calendar"}))[
            "ids"
        ] == []
        dismissed = await w.bob_own.ok(
            "ShareNotification/set",
            destroy=[query["ids"][0]],
            create={"n": {"name": "x"}},
            update={query["ids"][1]: {"name": "y"}},
        )
        assert dismissed["destroyed"] == [query["ids"][0]]
        assert dismissed["notCreated"]["n"]["type"] == "forbidden"
        assert dismissed["notUpdated"][query["ids"][1]]["type"] == "forbidden"
        since = await w.bob_own.ok("ShareNotification/changes", sinceState=notes["state"])
        assert since["destroyed"] == [query["ids"][0]]
        moved = await w.bob_own.ok(
            "ShareNotification/queryChanges",
            sinceQueryState=query["queryState"],
            sort=[{"property": "created"}],
        )
        assert moved["removed"] == [query["ids"][0]] and moved["added"] == []
        alice_notes = await w.alice.ok("ShareNotification/get", ids=None)
        assert alice_notes["list"] == []  # they are bob's


async def next_change(response: Any, account: str) -> dict[str, str]:
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            for line in block.split("\n"):
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    if account in data.get("changed", {}):
                        return data["changed"][account]
    raise AssertionError("the stream ended")


async def test_group_accounts_keep_working(tmp_path):
    """A group account is its members' in full (RFC 8620 §1.6.2): every right, every
    Mailbox, writes allowed, whatever sharing is set up elsewhere."""
    async with running_server(write_config(tmp_path)) as server, World(server) as w:
        await w.share(w.projects, {BOB: {"mayReadItems": True}})
        group = Client(w.alice_http, SALES)
        boxes = (await group.ok("Mailbox/get", ids=None))["list"]
        assert {m["role"] for m in boxes} >= {"inbox", "sent", "trash"}
        assert all(m["myRights"] == rights(*RIGHTS) for m in boxes)
        session = await w.alice.session()
        assert session["accounts"][SALES]["isReadOnly"] is False
        made = await group.ok("Mailbox/set", create={"t": {"name": "Team"}})
        assert "t" in made["created"]


async def test_sharing_with_a_group_shares_with_its_members(tmp_path):
    """RFC 9670 §4: a Principal in shareWith may be a group; its members get its rights
    (with their own, together), each with their own isSubscribed; others get nothing."""
    async with running_server(write_config(tmp_path, CAROL_IN_SALES)) as server, World(
        server
    ) as w:
        await w.share(w.projects, {SALES: {"mayReadItems": True}, BOB: {"maySetSeen": True}})
        await w.share(w.plans, {SALES: {"mayReadItems": True, "mayAddItems": True}})
        async with server.client("carol", "carol-password") as carol_http:
            carol = Client(carol_http, ALICE)
            session = await carol.session()
            assert session["accounts"][ALICE]["isReadOnly"] is False
            boxes = {m["id"]: m for m in (await carol.ok("Mailbox/get", ids=None))["list"]}
            assert set(boxes) == {w.projects, w.plans}
            assert boxes[w.plans]["myRights"] == rights("mayReadItems", "mayAddItems")
            found = (await carol.ok("Email/query"))["ids"]
            assert set(found) == {w.emails["project"], w.emails["both"], w.emails["plan"]}
            await carol.ok("Mailbox/set", update={w.plans: {"isSubscribed": False}})
        # bob: his own right only, not the group's.
        boxes = (await w.bob.ok("Mailbox/get", ids=None))["list"]
        assert [(m["id"], m["myRights"]) for m in boxes] == [(w.projects, rights("maySetSeen"))]
        assert (await w.bob.ok("Email/query"))["ids"] == []  # no mayReadItems for him
        # alice, in sales too, is the owner: nothing of her own account is "shared" to her.
        session = await w.alice.session()
        assert session["accounts"][ALICE]["isPersonal"] is True
