"""Emails and Threads over real HTTP, by RFC 8621 section: §3 threading, §4.2 Email/get,
§4.3 Email/changes, §4.4 Email/query (filters, sorts, collapseThreads), §4.6 Email/set
updates and destroys, §4.8 Email/import, §2 counts, §1.5 EmailDelivery."""

from __future__ import annotations

from typing import Any

import pytest

from jmap_host.testing import api, running_server

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
USING = [CORE, MAIL]


def message(
    subject: str,
    body: str = "Hello",
    *,
    sender: str = "Bob <bob@example.org>",
    msgid: str | None = None,
    reply_to: str | None = None,
    date: str = "Tue, 24 Nov 2026 10:00:00 +0100",
) -> bytes:
    lines = [
        f"From: {sender}",
        "To: Alice <alice@example.org>",
        f"Subject: {subject}",
        f"Date: {date}",
    ]
    if msgid:
        lines.append(f"Message-ID: <{msgid}>")
    if reply_to:
        lines += [f"In-Reply-To: <{reply_to}>", f"References: <{reply_to}>"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


class Mail:
    def __init__(self, http, account: str):
        self.http = http
        self.account = account
        self.roles: dict[str, str] = {}

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        result = await api(
            self.http, [[name, {"accountId": self.account, **args}, "c"]], using=USING
        )
        response = result["methodResponses"][0]
        return response[1] if response[0] == name else {"error": response[1]}

    async def load_roles(self) -> None:
        boxes = (await self.call("Mailbox/get", ids=None))["list"]
        self.roles = {m["role"]: m["id"] for m in boxes if m["role"]}

    async def import_(self, raw: bytes, mailbox: str = "inbox", **extra: Any) -> dict[str, Any]:
        upload = await self.http.post(
            f"/jmap/upload/{self.account}/", content=raw, headers={"Content-Type": "message/rfc822"}
        )
        blob = upload.json()["blobId"]
        result = await self.call(
            "Email/import",
            emails={"e": {"blobId": blob, "mailboxIds": {self.roles[mailbox]: True}, **extra}},
        )
        assert result["created"], result
        return result["created"]["e"]

    async def state(self, type_name: str) -> str:
        return (await self.call(f"{type_name}/get", ids=[]))["state"]


@pytest.fixture
async def mail(jmap_config):
    async with running_server(jmap_config) as server, server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        client = Mail(http, session["primaryAccounts"][MAIL])
        await client.load_roles()
        client.server = server
        yield client


async def test_import_returns_id_blob_thread_size(mail):
    """§4.8: created has id, blobId, threadId and size; the blob is the message."""
    raw = message("Hi", msgid="a@x")
    created = await mail.import_(raw)
    assert set(created) == {"id", "blobId", "threadId", "size"}
    assert created["size"] == len(raw)
    download = await mail.http.get(
        f"/jmap/download/{mail.account}/{created['blobId']}/m.eml?type=message/rfc822"
    )
    assert download.content == raw


async def test_import_errors(mail):
    """§4.8: invalidProperties for bad blobId, mailboxIds or keywords; stateMismatch."""
    result = await mail.call(
        "Email/import",
        emails={
            "noblob": {"blobId": "Gnope", "mailboxIds": {mail.roles["inbox"]: True}},
            "nobox": {"blobId": "Gnope", "mailboxIds": {}},
            "badbox": {"blobId": "Gnope", "mailboxIds": {"xnot": True}},
            "badkw": {
                "blobId": "Gnope",
                "mailboxIds": {mail.roles["inbox"]: True},
                "keywords": {"bad keyword": True},
            },
        },
    )
    errors = result["notCreated"]
    assert errors["noblob"]["properties"] == ["blobId"]
    assert errors["nobox"]["properties"] == ["mailboxIds"]
    assert errors["badkw"]["properties"] == ["keywords"]
    assert errors["badbox"]["type"] == "invalidProperties"
    stale = await mail.call("Email/import", ifInState="999", emails={})
    assert stale["error"]["type"] == "stateMismatch"


async def test_get_properties_and_body_values(mail):
    """§4.2: the default properties, header:X:asForm, bodyValues with truncation."""
    created = await mail.import_(message("Lunch", "A" * 100, msgid="l@x"))
    got = await mail.call("Email/get", ids=[created["id"], "xmissing"])
    assert got["notFound"] == ["xmissing"]
    email = got["list"][0]
    for prop in (
        "id",
        "blobId",
        "threadId",
        "mailboxIds",
        "keywords",
        "size",
        "receivedAt",
        "messageId",
        "from",
        "to",
        "subject",
        "sentAt",
        "hasAttachment",
        "preview",
        "bodyValues",
        "textBody",
        "htmlBody",
        "attachments",
    ):
        assert prop in email, prop
    assert email["messageId"] == ["l@x"]
    assert email["from"] == [{"name": "Bob", "email": "bob@example.org"}]
    assert email["sentAt"] == "2026-11-24T10:00:00+01:00"
    assert email["bodyValues"] == {}  # none fetched by default
    some = await mail.call(
        "Email/get",
        ids=[created["id"]],
        properties=["header:Subject:asText", "bodyValues", "textBody"],
        fetchTextBodyValues=True,
        maxBodyValueBytes=10,
    )
    email = some["list"][0]
    assert email["header:Subject:asText"] == "Lunch"
    part = email["textBody"][0]["partId"]
    assert email["bodyValues"][part] == {
        "value": "AAAAAAAAAA",
        "isEncodingProblem": False,
        "isTruncated": True,
    }
    bad = await mail.call("Email/get", ids=[created["id"]], properties=["header:From:asDate2"])
    assert bad["error"]["type"] == "invalidArguments"
    assert (await mail.call("Email/get", ids=None))["error"]["type"] == "requestTooLarge"


async def test_threading(mail):
    """§3: a reply (shared message id, same base subject) joins the Thread; a new subject
    starts a new one even when it replies; Thread/get lists emailIds oldest first."""
    first = await mail.import_(message("Plans", msgid="p1@x"))
    reply = await mail.import_(message("Re: Plans", msgid="p2@x", reply_to="p1@x"))
    other = await mail.import_(message("Something else", msgid="p3@x", reply_to="p1@x"))
    assert reply["threadId"] == first["threadId"] != other["threadId"]
    threads = await mail.call("Thread/get", ids=[first["threadId"]])
    assert threads["list"][0]["emailIds"] == [first["id"], reply["id"]]


async def test_query_filters_sorts_and_collapse(mail):
    """§4.4.1 filters, §4.4.2 sorts, §4.4.3 collapseThreads."""
    a = await mail.import_(
        message("Budget report", "numbers inside", msgid="q1@x"),
        keywords={"$seen": True},
        receivedAt="2026-01-01T00:00:00Z",
    )
    b = await mail.import_(
        message("Re: Budget report", "more numbers", msgid="q2@x", reply_to="q1@x"),
        receivedAt="2026-01-02T00:00:00Z",
    )
    c = await mail.import_(
        message("Party", "cake", sender="Carol <carol@example.org>"),
        mailbox="archive",
        receivedAt="2026-01-03T00:00:00Z",
    )

    async def ids(**args):
        result = await mail.call("Email/query", **args)
        assert "error" not in result, result
        return result["ids"]

    newest_first = [{"property": "receivedAt", "isAscending": False}]
    assert await ids(sort=newest_first) == [c["id"], b["id"], a["id"]]
    assert await ids(filter={"inMailbox": mail.roles["inbox"]}, sort=newest_first) == [
        b["id"],
        a["id"],
    ]
    assert await ids(filter={"inMailboxOtherThan": [mail.roles["inbox"]]}) == [c["id"]]
    assert await ids(filter={"text": "numbers"}, sort=newest_first) == [b["id"], a["id"]]
    assert await ids(filter={"body": "cake"}) == [c["id"]]
    assert await ids(filter={"from": "carol"}) == [c["id"]]
    assert await ids(filter={"subject": '"budget report"'}, sort=newest_first) == [b["id"], a["id"]]
    assert await ids(filter={"hasKeyword": "$seen"}) == [a["id"]]
    assert await ids(filter={"notKeyword": "$seen"}, sort=newest_first) == [c["id"], b["id"]]
    assert await ids(filter={"someInThreadHaveKeyword": "$seen"}, sort=newest_first) == [
        b["id"],
        a["id"],
    ]
    assert await ids(filter={"allInThreadHaveKeyword": "$seen"}) == []
    assert await ids(filter={"noneInThreadHaveKeyword": "$seen"}) == [c["id"]]
    assert await ids(filter={"after": "2026-01-02T00:00:00Z"}, sort=newest_first) == [
        c["id"],
        b["id"],
    ]
    assert await ids(filter={"before": "2026-01-02T00:00:00Z"}) == [a["id"]]
    assert await ids(filter={"minSize": 10_000}) == []
    collapsed = await mail.call(
        "Email/query", sort=newest_first, collapseThreads=True, calculateTotal=True
    )
    assert collapsed["ids"] == [c["id"], b["id"]] and collapsed["total"] == 2
    assert collapsed["collapseThreads"] is True
    unsupported = await mail.call("Email/query", filter={"header": ["X-Spam"]})
    assert unsupported["error"]["type"] == "unsupportedFilter"
    session = (await mail.http.get("/jmap/session")).json()
    options = session["accounts"][mail.account]["accountCapabilities"][MAIL]
    assert "receivedAt" in options["emailQuerySortOptions"]


async def test_set_keywords_and_mailboxes_updates_counts(mail):
    """§4.6 keyword and mailboxIds patches; §2 counts follow; Mailbox state changes."""
    created = await mail.import_(message("Count me"))
    inbox, archive = mail.roles["inbox"], mail.roles["archive"]
    before = await mail.state("Mailbox")

    async def counts(mailbox):
        got = await mail.call("Mailbox/get", ids=[mailbox])
        box = got["list"][0]
        return box["totalEmails"], box["unreadEmails"]

    assert await counts(inbox) == (1, 1)
    seen = await mail.call("Email/set", update={created["id"]: {"keywords/$seen": True}})
    assert seen["updated"] == {created["id"]: None}
    assert await counts(inbox) == (1, 0)
    moved = await mail.call(
        "Email/set",
        update={created["id"]: {f"mailboxIds/{inbox}": None, f"mailboxIds/{archive}": True}},
    )
    assert moved["notUpdated"] is None
    assert await counts(inbox) == (0, 0) and await counts(archive) == (1, 0)
    assert await mail.state("Mailbox") != before
    nowhere = await mail.call("Email/set", update={created["id"]: {"mailboxIds": {}}})
    assert nowhere["notUpdated"][created["id"]]["properties"] == ["mailboxIds"]
    immutable = await mail.call("Email/set", update={created["id"]: {"subject": "x"}})
    assert immutable["notUpdated"][created["id"]]["type"] == "invalidProperties"


async def test_destroy_and_on_destroy_remove_emails(mail):
    """§4.6 destroy updates the Thread; §2.5 onDestroyRemoveEmails destroys Emails left in
    no Mailbox and keeps the others."""
    one = await mail.import_(message("One", msgid="d1@x"))
    two = await mail.import_(message("Re: One", msgid="d2@x", reply_to="d1@x"))
    destroyed = await mail.call("Email/set", destroy=[one["id"]])
    assert destroyed["destroyed"] == [one["id"]]
    thread = (await mail.call("Thread/get", ids=[two["threadId"]]))["list"][0]
    assert thread["emailIds"] == [two["id"]]
    created = await mail.call("Mailbox/set", create={"f": {"name": "Folder"}})
    folder = created["created"]["f"]["id"]
    mail.roles["folder"] = folder
    alone = await mail.import_(message("Alone"), mailbox="folder")
    await mail.call("Email/set", update={two["id"]: {f"mailboxIds/{folder}": True}})
    refused = await mail.call("Mailbox/set", destroy=[folder])
    assert refused["notDestroyed"][folder]["type"] == "mailboxHasEmail"
    gone = await mail.call("Mailbox/set", destroy=[folder], onDestroyRemoveEmails=True)
    assert gone["destroyed"] == [folder]
    left = await mail.call("Email/get", ids=[alone["id"], two["id"]], properties=["mailboxIds"])
    assert left["notFound"] == [alone["id"]]
    assert left["list"][0]["mailboxIds"] == {mail.roles["inbox"]: True}


async def test_changes_and_email_delivery_state(mail):
    """§4.3 Email/changes, §3.2 Thread/changes; §1.5 EmailDelivery changes on arrival only."""
    email_state = await mail.state("Email")
    thread_state = await mail.state("Thread")
    created = await mail.import_(message("Tracked"))
    changes = await mail.call("Email/changes", sinceState=email_state)
    assert changes["created"] == [created["id"]]
    thread_changes = await mail.call("Thread/changes", sinceState=thread_state)
    assert thread_changes["created"] == [created["threadId"]]
    states = mail.server.host.store.read

    def delivery_state(db):
        from jmap_host import objectstore

        return dict(objectstore.type_states(db, mail.account)).get("EmailDelivery")

    arrived = await states(delivery_state)
    await mail.call("Email/set", update={created["id"]: {"keywords/$flagged": True}})
    assert await states(delivery_state) == arrived
    await mail.import_(message("Another"))
    assert await states(delivery_state) != arrived
