"""Mailboxes over real HTTP, by RFC 8621 section: §1.3.1 capability, §2 properties and
default mailboxes, §2.1 get, §2.2 changes, §2.3 query (sortAsTree, filterAsTree), §2.5 set."""

from __future__ import annotations

from typing import Any

import pytest
from jmap_host_mail.testing import MailClient

from jmap_host.testing import running_server

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
USING = [CORE, MAIL]


class Mail(MailClient):
    def __init__(self, http, account: str):
        self.http = http
        self.account = account

    errors_as_results = True  # tests look at method errors themselves

    async def mailboxes(self) -> dict[str, dict[str, Any]]:
        listed = (await self.call("Mailbox/get", ids=None))["list"]
        return {m["name"]: m for m in listed}


@pytest.fixture
async def mail(jmap_config):
    async with running_server(jmap_config) as server, server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        yield Mail(http, session["primaryAccounts"][MAIL])


async def test_capability_and_default_mailboxes(mail):
    """§1.3.1: the account capability; the issue: new accounts get the standard Mailboxes,
    each with its RFC 8457 role."""
    session = (await mail.http.get("/jmap/session")).json()
    assert session["capabilities"][MAIL] == {}
    capability = session["accounts"][mail.account]["accountCapabilities"][MAIL]
    assert capability["maxSizeMailboxName"] >= 100
    assert capability["mayCreateTopLevelMailbox"] is True
    boxes = await mail.mailboxes()
    assert {n: m["role"] for n, m in boxes.items()} == {
        "Inbox": "inbox",
        "Drafts": "drafts",
        "Sent": "sent",
        "Archive": "archive",
        "Junk": "junk",
        "Trash": "trash",
    }
    inbox = boxes["Inbox"]
    assert (
        inbox["totalEmails"],
        inbox["unreadEmails"],
        inbox["totalThreads"],
        inbox["unreadThreads"],
    ) == (0, 0, 0, 0)
    assert inbox["myRights"]["mayReadItems"] is True and len(inbox["myRights"]) == 9
    assert inbox["parentId"] is None and inbox["isSubscribed"] is True


async def test_set_rules(mail):
    """§2: unique roles, unique sibling names, no loops, valid parents; §2.5 errors."""
    created = await mail.call(
        "Mailbox/set",
        create={
            "work": {"name": "Work"},
            "sub": {"name": "Projects", "parentId": "#work"},
            "dup": {"name": "Work"},
            "role": {"name": "Second inbox", "role": "inbox"},
            "badrole": {"name": "Odd", "role": "nonsense"},
            "orphan": {"name": "Orphan", "parentId": "xnotthere"},
            "empty": {"name": ""},
            "counts": {"name": "Counts", "totalEmails": 5},
        },
    )
    assert set(created["created"]) == {"work", "sub"}
    errors = created["notCreated"]
    assert errors["dup"]["properties"] == ["name"]
    assert errors["role"]["properties"] == ["role"]
    assert errors["badrole"]["properties"] == ["role"]
    assert errors["orphan"]["properties"] == ["parentId"]
    assert errors["empty"]["properties"] == ["name"]
    assert errors["counts"]["properties"] == ["totalEmails"]
    work, sub = created["created"]["work"]["id"], created["created"]["sub"]["id"]
    loop = await mail.call("Mailbox/set", update={work: {"parentId": sub}})
    assert loop["notUpdated"][work]["properties"] == ["parentId"]
    same_name_elsewhere = await mail.call("Mailbox/set", create={"x": {"name": "Projects"}})
    assert same_name_elsewhere["created"]
    destroy_parent = await mail.call("Mailbox/set", destroy=[work])
    assert destroy_parent["notDestroyed"][work]["type"] == "mailboxHasChild"
    gone = await mail.call("Mailbox/set", destroy=[sub, work])
    assert gone["destroyed"] == [sub, work]


async def test_changes_have_updated_properties(mail):
    """§2.2: Mailbox/changes answers updatedProperties (null when not only counts)."""
    state = (await mail.call("Mailbox/get", ids=[]))["state"]
    created = await mail.call("Mailbox/set", create={"a": {"name": "A"}})
    changes = await mail.call("Mailbox/changes", sinceState=state)
    assert changes["created"] == [created["created"]["a"]["id"]]
    assert "updatedProperties" in changes and changes["updatedProperties"] is None


async def test_query_filters_and_tree(mail):
    """§2.3: the filter conditions; sortAsTree puts parents before children, siblings in
    sort order; filterAsTree drops Mailboxes whose ancestors do not match."""
    created = await mail.call(
        "Mailbox/set",
        create={
            "z": {"name": "Zoo", "sortOrder": 0},
            "za": {"name": "Alpha", "parentId": "#z"},
            "zb": {"name": "Beta", "parentId": "#z", "isSubscribed": False},
        },
    )
    ids = {k: v["id"] for k, v in created["created"].items()}
    boxes = await mail.mailboxes()
    name_of = {m["id"]: n for n, m in boxes.items()}
    roles = await mail.call("Mailbox/query", filter={"hasAnyRole": True})
    assert {name_of[i] for i in roles["ids"]} == {
        "Inbox",
        "Drafts",
        "Sent",
        "Archive",
        "Junk",
        "Trash",
    }
    top = await mail.call("Mailbox/query", filter={"parentId": None, "hasAnyRole": False})
    assert [name_of[i] for i in top["ids"]] == ["Zoo"]
    children = await mail.call(
        "Mailbox/query", filter={"parentId": ids["z"]}, sort=[{"property": "name"}]
    )
    assert [name_of[i] for i in children["ids"]] == ["Alpha", "Beta"]
    inbox = await mail.call("Mailbox/query", filter={"role": "inbox"})
    assert [name_of[i] for i in inbox["ids"]] == ["Inbox"]
    named = await mail.call("Mailbox/query", filter={"name": "ET"})
    assert [name_of[i] for i in named["ids"]] == ["Beta"]
    tree = await mail.call("Mailbox/query", sortAsTree=True, sort=[{"property": "name"}])
    names = [name_of[i] for i in tree["ids"]]
    assert names.index("Zoo") < names.index("Alpha") < names.index("Beta")
    subscribed = await mail.call(
        "Mailbox/query",
        filterAsTree=True,
        filter={"operator": "NOT", "conditions": [{"name": "Zoo"}]},
    )
    assert "Alpha" not in [name_of[i] for i in subscribed["ids"]]  # its parent is filtered out
    assert subscribed["canCalculateChanges"] is False
