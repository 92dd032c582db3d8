"""Emails and Threads over real HTTP, by RFC 8621 section: §3 threading, §4.2 Email/get,
§4.3 Email/changes, §4.4 Email/query (filters incl. header, sorts incl. from/to and the
keyword comparators, collapseThreads), §4.5 Email/queryChanges, §4.6 Email/set (create,
updates, destroys), §4.7 Email/copy, §4.8 Email/import, §4.9 Email/parse, §5 SearchSnippet,
§2 counts, §2.5 push of onDestroyRemoveEmails, §1.5 EmailDelivery."""

from __future__ import annotations

from typing import Any

import pytest
from jmap_host_mail.testing import MailClient

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


class Mail(MailClient):
    def __init__(self, http, account: str):
        self.http = http
        self.account = account
        self.roles: dict[str, str] = {}

    errors_as_results = True  # tests look at method errors themselves

    async def load_roles(self) -> None:
        boxes = (await self.call("Mailbox/get", ids=None))["list"]
        self.roles = {m["role"]: m["id"] for m in boxes if m["role"]}

    async def import_(self, raw: bytes, mailbox: str = "inbox", **extra: Any) -> dict[str, Any]:
        blob = await self.upload(raw)
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
    unsupported = await mail.call("Email/query", filter={"nonsense": ["X-Spam"]})
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


# -- helpers for the sections below ------------------------------------------------------------


async def batch(mail: Mail, calls: list[list[Any]]) -> list[list[Any]]:
    result = await api(mail.http, calls, using=USING)
    return result["methodResponses"]


async def upload(mail: Mail, data: bytes, account: str | None = None, kind: str = "text/plain"):
    return await mail.upload(data, kind, account)


async def query_ids(mail: Mail, **args: Any) -> list[str]:
    result = await mail.call("Email/query", **args)
    assert "error" not in result, result
    return result["ids"]


# -- §4.4.1 the header filter ------------------------------------------------------------------


async def test_query_header_filter(mail):
    """§4.4.1 header: [name] matches presence, [name, text] the decoded value,
    case-insensitively; the name is case-insensitive; more than two elements is invalid."""
    raw = message("Listed", msgid="h1@x").replace(
        b"Subject:", b"X-Spam-Flag: YES\r\nList-Id: =?utf-8?q?Caf=C3=A9_list?= <cafe.x>\r\nSubject:"
    )
    listed = await mail.import_(raw)
    plain = await mail.import_(message("Plain", msgid="h2@x"))
    assert await query_ids(mail, filter={"header": ["x-spam-flag"]}) == [listed["id"]]
    assert await query_ids(mail, filter={"header": ["X-Spam-Flag", "yes"]}) == [listed["id"]]
    assert await query_ids(mail, filter={"header": ["X-Spam-Flag", "no"]}) == []
    assert await query_ids(mail, filter={"header": ["List-Id", "café"]}) == [listed["id"]]
    assert await query_ids(mail, filter={"header": ["Message-ID", "h2@x"]}) == [plain["id"]]
    both = await query_ids(mail, filter={"header": ["Subject"]})
    assert sorted(both) == sorted([listed["id"], plain["id"]])
    negated = {"operator": "NOT", "conditions": [{"header": ["X-Spam-Flag"]}]}
    assert await query_ids(mail, filter=negated) == [plain["id"]]
    for bad in ([], ["a", "b", "c"], "X-Spam-Flag"):
        result = await mail.call("Email/query", filter={"header": bad})
        assert result["error"]["type"] == "invalidArguments", bad
    # Destroying an Email drops its header rows with it.
    await mail.call("Email/set", destroy=[listed["id"]])
    assert await query_ids(mail, filter={"header": ["X-Spam-Flag"]}) == []


# -- §4.4.2 sorts ------------------------------------------------------------------------------


async def test_query_sorts_from_to_subject_and_keywords(mail):
    """§4.4.2: from/to use the first address's name, else its email; subject is the base
    subject; hasKeyword, allInThreadHaveKeyword and someInThreadHaveKeyword need keyword."""
    a = await mail.import_(
        message("Re: banana", sender="zed@example.org", msgid="s1@x"),
        receivedAt="2026-01-01T00:00:00Z",
    )
    b = await mail.import_(
        message("apple", sender="Mallory <aaa@example.org>", msgid="s2@x"),
        keywords={"$flagged": True},
        receivedAt="2026-01-02T00:00:00Z",
    )
    c = await mail.import_(
        message("Re: apple", sender="Bob <bob@example.org>", msgid="s3@x", reply_to="s2@x"),
        receivedAt="2026-01-03T00:00:00Z",
    )
    assert await query_ids(mail, sort=[{"property": "from"}]) == [c["id"], b["id"], a["id"]]
    assert await query_ids(mail, sort=[{"property": "from", "isAscending": False}]) == [
        a["id"], b["id"], c["id"],
    ]  # fmt: skip
    # Every To is "Alice <alice@...>": ties fall back to the id, but the sort is accepted.
    assert len(await query_ids(mail, sort=[{"property": "to"}])) == 3
    by_subject = [{"property": "subject"}, {"property": "receivedAt"}]
    assert await query_ids(mail, sort=by_subject) == [b["id"], c["id"], a["id"]]
    flagged_first = [
        {"property": "hasKeyword", "keyword": "$flagged", "isAscending": False},
        {"property": "receivedAt"},
    ]
    assert await query_ids(mail, sort=flagged_first) == [b["id"], a["id"], c["id"]]
    thread_first = [
        {"property": "someInThreadHaveKeyword", "keyword": "$flagged", "isAscending": False},
        {"property": "receivedAt"},
    ]
    assert await query_ids(mail, sort=thread_first) == [b["id"], c["id"], a["id"]]
    all_in_thread = [
        {"property": "allInThreadHaveKeyword", "keyword": "$flagged", "isAscending": False},
        {"property": "receivedAt"},
    ]
    assert await query_ids(mail, sort=all_in_thread) == [a["id"], b["id"], c["id"]]
    await mail.call("Email/set", update={c["id"]: {"keywords/$flagged": True}})
    assert await query_ids(mail, sort=all_in_thread) == [b["id"], c["id"], a["id"]]
    no_keyword = await mail.call("Email/query", sort=[{"property": "hasKeyword"}])
    assert no_keyword["error"]["type"] == "invalidArguments"
    unknown = await mail.call("Email/query", sort=[{"property": "color"}])
    assert unknown["error"]["type"] == "unsupportedSort"
    collation = await mail.call("Email/query", sort=[{"property": "from", "collation": "x;y"}])
    assert collation["error"]["type"] == "unsupportedSort"
    session = (await mail.http.get("/jmap/session")).json()
    options = session["accounts"][mail.account]["accountCapabilities"][MAIL]
    assert set(options["emailQuerySortOptions"]) == {
        "receivedAt", "size", "subject", "sentAt", "from", "to", "hasKeyword",
        "allInThreadHaveKeyword", "someInThreadHaveKeyword",
    }  # fmt: skip
    for sort in (flagged_first, [{"property": "from"}], by_subject):
        # Every advertised sort also pages with collapseThreads.
        result = await mail.call("Email/query", sort=sort, collapseThreads=True, limit=1)
        assert len(result["ids"]) == 1


async def test_query_changes_with_mail_sorts(mail):
    """§4.5: keyword sorts follow the log; Thread-wide sorts and filters (and
    collapseThreads) cannot, and their /query says canCalculateChanges false."""
    a = await mail.import_(message("One", msgid="c1@x"), receivedAt="2026-01-01T00:00:00Z")
    b = await mail.import_(message("Two", msgid="c2@x"), receivedAt="2026-01-02T00:00:00Z")
    sort = [
        {"property": "hasKeyword", "keyword": "$flagged", "isAscending": False},
        {"property": "receivedAt"},
    ]
    first = await mail.call("Email/query", sort=sort)
    assert first["ids"] == [a["id"], b["id"]] and first["canCalculateChanges"] is True
    await mail.call("Email/set", update={b["id"]: {"keywords/$flagged": True}})
    changes = await mail.call("Email/queryChanges", sort=sort, sinceQueryState=first["queryState"])
    assert changes["removed"] == [b["id"]]
    assert changes["added"] == [{"id": b["id"], "index": 0}]
    thread_sort = [{"property": "someInThreadHaveKeyword", "keyword": "$flagged"}]
    for args in (
        {"sort": thread_sort},
        {"filter": {"allInThreadHaveKeyword": "$seen"}},
        {"collapseThreads": True},
    ):
        query = await mail.call("Email/query", **args)
        assert query["canCalculateChanges"] is False, args
        refused = await mail.call("Email/queryChanges", sinceQueryState=query["queryState"], **args)
        assert refused["error"]["type"] == "cannotCalculateChanges", args


# -- §4.6 Email/set create ---------------------------------------------------------------------


async def test_set_create_draft_with_attachment_and_creation_ids(mail):
    """§4.6: an Email made from JSON, with a Mailbox created earlier in the request (#id in
    mailboxIds), an uploaded attachment, and updated later in the same call by #id; created
    has id, blobId, threadId and size; a draft is a new Email in the store, so EmailDelivery
    changes (§1.5 "MUST change whenever a new Email is added to the store")."""
    pdf = b"%PDF-1.4 not really a pdf\x00\x01"
    blob = await upload(mail, pdf, kind="application/pdf")
    states = mail.server.host.store.read

    def delivery_state(db):
        from jmap_host import objectstore

        return dict(objectstore.type_states(db, mail.account)).get("EmailDelivery")

    delivery = await states(delivery_state)
    draft = {
        "mailboxIds": {"#box": True},
        "keywords": {"$draft": True},
        "from": [{"name": "Alice", "email": "alice@example.org"}],
        "to": [{"name": "Bob", "email": "bob@example.org"}],
        "subject": "Quarterly <numbers> & more",
        "receivedAt": "2026-02-01T10:00:00Z",
        "bodyValues": {"t": {"value": "Please find the report attached."}},
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "attachments": [{"blobId": blob, "type": "application/pdf", "name": "report.pdf"}],
    }
    new_box = {"box": {"name": "Drafts2"}}
    responses = await batch(
        mail,
        [
            ["Mailbox/set", {"accountId": mail.account, "create": new_box}, "0"],
            [
                "Email/set",
                {
                    "accountId": mail.account,
                    "create": {"d": draft},
                    "update": {"#d": {"keywords/$seen": True}},
                },
                "1",
            ],
            [
                "Email/get",
                {
                    "accountId": mail.account,
                    "ids": ["#d"],
                    "properties": [
                        "mailboxIds", "keywords", "subject", "from", "receivedAt", "attachments",
                        "bodyValues", "messageId", "sentAt", "blobId", "size",
                    ],
                    "fetchTextBodyValues": True,
                },
                "2",
            ],
        ],
    )  # fmt: skip
    box = responses[0][1]["created"]["box"]["id"]
    result = responses[1][1]
    created = result["created"]["d"]
    assert set(created) == {"id", "blobId", "threadId", "size"}
    assert result["updated"] == {created["id"]: None}
    [email] = responses[2][1]["list"]
    assert email["mailboxIds"] == {box: True}
    assert email["keywords"] == {"$draft": True, "$seen": True}
    assert email["subject"] == "Quarterly <numbers> & more"
    assert email["from"] == [{"name": "Alice", "email": "alice@example.org"}]
    assert email["receivedAt"] == "2026-02-01T10:00:00Z"
    assert email["messageId"] and email["sentAt"]  # §4.6: the server adds both
    assert email["size"] == created["size"] and email["blobId"] == created["blobId"]
    [value] = email["bodyValues"].values()
    assert value["value"].strip() == "Please find the report attached."
    [attachment] = email["attachments"]
    assert attachment["name"] == "report.pdf" and attachment["size"] == len(pdf)
    download = await mail.http.get(
        f"/jmap/download/{mail.account}/{attachment['blobId']}/r.pdf?type=application/pdf"
    )
    assert download.content == pdf
    raw = await mail.http.get(
        f"/jmap/download/{mail.account}/{created['blobId']}/m.eml?type=message/rfc822"
    )
    assert b"Subject: Quarterly <numbers> & more" in raw.content
    assert await states(delivery_state) != delivery
    assert await mail.state("Email") == result["newState"] != result["oldState"]


async def test_set_create_errors(mail):
    """§4.6: invalidProperties with the properties; blobNotFound with notFound (also for
    a blob only another user uploaded); bad mailboxIds and creation ids."""
    inbox = mail.roles["inbox"]
    async with mail.server.client("bob") as bob:
        session = (await bob.get("/jmap/session")).json()
        bobs = (
            await bob.post(
                f"/jmap/upload/{session['primaryAccounts'][MAIL]}/",
                content=b"bob's secret",
                headers={"Content-Type": "text/plain"},
            )
        ).json()["blobId"]
    result = await mail.call(
        "Email/set",
        create={
            "headers": {"mailboxIds": {inbox: True}, "headers": [], "subject": "x"},
            "dupe": {"mailboxIds": {inbox: True}, "subject": "x", "header:Subject": "y"},
            "noblob": {
                "mailboxIds": {inbox: True},
                "attachments": [{"blobId": "Gmissing", "type": "text/plain"}, {"blobId": bobs}],
            },
            "nobox": {"mailboxIds": {}, "subject": "x"},
            "unknownbox": {"mailboxIds": {"nosuchbox": True}, "subject": "x"},
            "badref": {"mailboxIds": {"#nope": True}, "subject": "x"},
            "badkw": {"mailboxIds": {inbox: True}, "keywords": {"a b": True}},
            "serverset": {"mailboxIds": {inbox: True}, "id": "x", "size": 3},
        },
    )
    errors = result["notCreated"]
    assert result["created"] is None
    assert errors["headers"] == {**errors["headers"], "type": "invalidProperties"}
    assert "headers" in errors["headers"]["properties"]
    assert errors["dupe"]["type"] == "invalidProperties"
    assert errors["noblob"]["type"] == "blobNotFound"
    assert sorted(errors["noblob"]["notFound"]) == sorted(["Gmissing", bobs])
    assert errors["nobox"]["properties"] == ["mailboxIds"]
    assert errors["unknownbox"]["properties"] == ["mailboxIds"]
    assert errors["badref"]["properties"] == ["mailboxIds"]
    assert errors["badkw"]["properties"] == ["keywords"]
    assert set(errors["serverset"]["properties"]) == {"id", "size"}
    assert result["oldState"] == result["newState"]
    stale = await mail.call("Email/set", ifInState="999", create={})
    assert stale["error"]["type"] == "stateMismatch"


# -- §4.7 Email/copy ---------------------------------------------------------------------------


async def group_mail(mail: Mail) -> Mail:
    session = (await mail.http.get("/jmap/session")).json()
    [group] = [a for a in session["accounts"] if a != mail.account]
    other = Mail(mail.http, group)
    await other.load_roles()
    return other


async def test_copy_to_group_account_and_destroy_original(mail):
    """§4.7: the copy is a new Email in the target account (new id, its own Thread, the
    same message blob, downloadable there), with mailboxIds/keywords/receivedAt set by
    the call; onSuccessDestroyOriginal answers with the implicit Email/set."""
    sales = await group_mail(mail)
    original = await mail.import_(
        message("Lead", "a big customer", msgid="cp1@x"),
        keywords={"$seen": True},
        receivedAt="2026-03-01T00:00:00Z",
    )
    responses = await batch(
        mail,
        [
            [
                "Email/copy",
                {
                    "fromAccountId": mail.account,
                    "accountId": sales.account,
                    "create": {
                        "c": {
                            "id": original["id"],
                            "mailboxIds": {sales.roles["inbox"]: True},
                            "keywords": {"$flagged": True},
                        }
                    },
                    "onSuccessDestroyOriginal": True,
                },
                "0",
            ],
            [
                "Email/get",
                {"accountId": sales.account, "ids": ["#c"], "properties": [
                    "mailboxIds", "keywords", "receivedAt", "subject", "threadId", "blobId",
                ]},
                "1",
            ],
        ],
    )  # fmt: skip
    name, copied, _ = responses[0]
    assert name == "Email/copy"
    assert copied["fromAccountId"] == mail.account and copied["accountId"] == sales.account
    created = copied["created"]["c"]
    assert set(created) == {"id", "blobId", "threadId", "size"}
    assert created["id"] != original["id"] and created["blobId"] == original["blobId"]
    assert created["size"] == original["size"]
    assert responses[1][0] == "Email/set"
    assert responses[1][1]["destroyed"] == [original["id"]]
    [email] = responses[2][1]["list"]
    assert email["mailboxIds"] == {sales.roles["inbox"]: True}
    assert email["keywords"] == {"$flagged": True}
    assert email["receivedAt"] == "2026-03-01T00:00:00Z"
    assert email["subject"] == "Lead" and email["threadId"] == created["threadId"]
    gone = await mail.call("Email/get", ids=[original["id"]], properties=["id"])
    assert gone["notFound"] == [original["id"]]
    thread = await sales.call("Thread/get", ids=[created["threadId"]])
    assert thread["list"][0]["emailIds"] == [created["id"]]
    download = await mail.http.get(
        f"/jmap/download/{sales.account}/{created['blobId']}/m.eml?type=message/rfc822"
    )
    assert download.status_code == 200 and b"Subject: Lead" in download.content
    found = await query_ids(sales, filter={"text": "customer"})
    assert found == [created["id"]]


async def test_copy_errors(mail):
    """§4.7 / RFC 8620 §5.4: fromAccountNotFound, the same account, notFound,
    mailboxIds required, only mailboxIds/keywords/receivedAt, stateMismatch."""
    sales = await group_mail(mail)
    original = await mail.import_(message("Copy me", msgid="cp2@x"))
    missing = await sales.call("Email/copy", fromAccountId="nosuch", create={})
    assert missing["error"]["type"] == "fromAccountNotFound"
    same = await mail.call("Email/copy", fromAccountId=mail.account, create={})
    assert same["error"]["type"] == "invalidArguments"
    inbox = {sales.roles["inbox"]: True}
    result = await sales.call(
        "Email/copy",
        fromAccountId=mail.account,
        create={
            "gone": {"id": "nosuchemail", "mailboxIds": inbox},
            "nobox": {"id": original["id"]},
            "subject": {"id": original["id"], "mailboxIds": inbox, "subject": "x"},
        },
    )
    assert result["created"] is None
    assert result["notCreated"]["gone"]["type"] == "notFound"
    assert result["notCreated"]["nobox"]["properties"] == ["mailboxIds"]
    assert result["notCreated"]["subject"]["properties"] == ["subject"]
    stale = await sales.call(
        "Email/copy", fromAccountId=mail.account, ifFromInState="999", create={}
    )
    assert stale["error"]["type"] == "stateMismatch"


# -- §4.9 Email/parse --------------------------------------------------------------------------


MULTIPART = (
    b"From: Carol <carol@example.org>\r\nTo: Alice <alice@example.org>\r\n"
    b"Subject: Attached\r\nMessage-ID: <p1@x>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nSee the notes.\r\n"
    b"--b\r\nContent-Type: text/plain; name=notes.txt\r\n"
    b"Content-Disposition: attachment; filename=notes.txt\r\n\r\nnote one\r\n"
    b"--b--\r\n"
)


async def test_parse_blobs(mail):
    """§4.9: parsed with the default properties and the fetch arguments; metadata null,
    threadId the Thread it would join; part blobs downloadable; notParsable, notFound
    (also another user's upload); forbidden header forms are invalidArguments."""
    thread = await mail.import_(message("Attached", msgid="p0@x"))
    raw = MULTIPART.replace(b"Message-ID: <p1@x>", b"Message-ID: <p1@x>\r\nReferences: <p0@x>")
    blob = await upload(mail, raw, kind="message/rfc822")
    garbage = await upload(mail, b"\x00\x01\x02 binary, no header at all")
    async with mail.server.client("bob") as bob:
        session = (await bob.get("/jmap/session")).json()
        bobs = (
            await bob.post(
                f"/jmap/upload/{session['primaryAccounts'][MAIL]}/",
                content=MULTIPART,
                headers={"Content-Type": "message/rfc822"},
            )
        ).json()["blobId"]
    result = await mail.call(
        "Email/parse", blobIds=[blob, garbage, "Gnothing", bobs], fetchTextBodyValues=True
    )
    assert result["notParsable"] == [garbage]
    assert sorted(result["notFound"]) == sorted(["Gnothing", bobs])
    email = result["parsed"][blob]
    assert set(email) == {
        "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
        "replyTo", "subject", "sentAt", "hasAttachment", "preview", "bodyValues", "textBody",
        "htmlBody", "attachments",
    }  # fmt: skip
    assert email["subject"] == "Attached" and email["hasAttachment"] is True
    assert email["from"] == [{"name": "Carol", "email": "carol@example.org"}]
    [text] = email["textBody"]
    assert email["bodyValues"][text["partId"]]["value"].strip() == "See the notes."
    [attachment] = email["attachments"]
    assert attachment["name"] == "notes.txt"
    download = await mail.http.get(
        f"/jmap/download/{mail.account}/{attachment['blobId']}/n.txt?type=text/plain"
    )
    assert download.content.strip() == b"note one"
    meta = await mail.call(
        "Email/parse",
        blobIds=[blob],
        properties=["id", "blobId", "threadId", "mailboxIds", "keywords", "receivedAt", "size",
                    "header:Subject:asText", "bodyStructure"],
        bodyProperties=["partId", "type"],
    )  # fmt: skip
    parsed = meta["parsed"][blob]
    assert parsed["id"] is None and parsed["mailboxIds"] is None and parsed["keywords"] is None
    assert parsed["receivedAt"] is None and parsed["blobId"] == blob
    assert parsed["threadId"] == thread["threadId"] and parsed["size"] == len(raw)
    assert parsed["header:Subject:asText"] == "Attached"
    assert [p["type"] for p in parsed["bodyStructure"]["subParts"]] == ["text/plain"] * 2
    assert set(parsed["bodyStructure"]["subParts"][0]) == {"partId", "type"}
    forbidden = await mail.call("Email/parse", blobIds=[blob], properties=["header:From:asDate"])
    assert forbidden["error"]["type"] == "invalidArguments"
    nothing = await mail.call("Email/parse", blobIds=[])
    assert nothing["parsed"] is None and nothing["notFound"] is None


# -- §5 SearchSnippet/get ----------------------------------------------------------------------


async def test_search_snippets(mail):
    """§5.1: subject and preview with <mark> around the filter's terms, HTML-escaped,
    null when nothing matches; notFound for unknown ids; the filter is required."""
    long_body = "Intro words. " * 40 + "The <Foosball> & darts competition is on Friday."
    hit = await mail.import_(message("The Foosball <cup> & co", long_body))
    miss = await mail.import_(message("Unrelated", "nothing here"))
    result = await mail.call(
        "SearchSnippet/get",
        filter={"operator": "AND", "conditions": [{"text": "foosball"}, {"body": '"darts"'}]},
        emailIds=[hit["id"], miss["id"], "nosuchemail"],
    )
    assert result["notFound"] == ["nosuchemail"]
    snippets = {s["emailId"]: s for s in result["list"]}
    assert snippets[hit["id"]]["subject"] == ("The <mark>Foosball</mark> &lt;cup&gt; &amp; co")
    preview = snippets[hit["id"]]["preview"]
    assert "&lt;<mark>Foosball</mark>&gt; &amp; <mark>darts</mark> competition" in preview
    assert len(preview.encode()) <= 255
    assert snippets[miss["id"]] == {"emailId": miss["id"], "subject": None, "preview": None}
    subject_only = await mail.call(
        "SearchSnippet/get", filter={"subject": "cup"}, emailIds=[hit["id"]]
    )
    [one] = subject_only["list"]
    assert one["subject"] == "The Foosball &lt;<mark>cup</mark>&gt; &amp; co"
    assert one["preview"] is None
    negated = await mail.call(
        "SearchSnippet/get",
        filter={"operator": "NOT", "conditions": [{"text": "foosball"}]},
        emailIds=[hit["id"]],
    )
    assert negated["list"][0]["subject"] is None
    required = await mail.call("SearchSnippet/get", emailIds=[hit["id"]])
    assert required["error"]["type"] == "invalidArguments"
    unsupported = await mail.call("SearchSnippet/get", filter={"nonsense": 1}, emailIds=[hit["id"]])
    assert unsupported["error"]["type"] == "unsupportedFilter"


# -- §2.5 + §1.5 push for onDestroyRemoveEmails ------------------------------------------------


async def test_mailbox_destroy_with_emails_pushes_email_and_thread_states(mail):
    """Mailbox/set onDestroyRemoveEmails destroys Emails and Threads: push listeners hear
    the new Email and Thread states, not only Mailbox."""
    created = await mail.call("Mailbox/set", create={"f": {"name": "Doomed"}})
    mail.roles["doomed"] = created["created"]["f"]["id"]
    await mail.import_(message("Doomed mail"), mailbox="doomed")
    push = mail.server.host.push
    heard: list[dict[str, str]] = []
    original = push.publish

    def spy(account, states, *args, **kwargs):
        if account == mail.account:
            heard.append(dict(states))
        return original(account, states, *args, **kwargs)

    push.publish = spy
    try:
        email_state, thread_state = await mail.state("Email"), await mail.state("Thread")
        gone = await mail.call(
            "Mailbox/set", destroy=[mail.roles["doomed"]], onDestroyRemoveEmails=True
        )
        assert gone["destroyed"] == [mail.roles["doomed"]]
    finally:
        push.publish = original
    last = heard[-1]
    assert last["Email"] == await mail.state("Email") != email_state
    assert last["Thread"] == await mail.state("Thread") != thread_state
    assert last["Mailbox"] == gone["newState"]


async def test_get_order_and_query_limits(mail):
    """RFC 8620 §5.1: Email/get answers in the order of ``ids`` (a newest-first page reads
    back newest first); RFC 8620 §5.5: too many comparators is unsupportedSort, a filter
    too big or deep unsupportedFilter, and a long inMailboxOtherThan list still runs."""
    ids = [(await mail.import_(message(f"m{i}", msgid=f"o{i}@x")))["id"] for i in range(4)]
    newest = await mail.call("Email/query", sort=[{"property": "receivedAt", "isAscending": False}])
    order = [ids[2], ids[0], ids[3], ids[1]]
    got = await mail.call("Email/get", ids=order, properties=["subject"])
    assert [e["id"] for e in got["list"]] == order
    got = await mail.call("Email/get", ids=newest["ids"][:3], properties=["id"])
    assert [e["id"] for e in got["list"]] == newest["ids"][:3]
    many = [{"property": "subject"}] * 200
    assert (await mail.call("Email/query", sort=many))["error"]["type"] == "unsupportedSort"
    wide = {"operator": "OR", "conditions": [{"subject": f"s{i}"} for i in range(2000)]}
    assert (await mail.call("Email/query", filter=wide))["error"]["type"] == "unsupportedFilter"
    deep: dict[str, Any] = {"text": "m1"}
    for _ in range(40):  # (past MAX_FILTER_DEPTH, within I-JSON's nesting limit)
        deep = {"operator": "NOT", "conditions": [deep]}
    assert (await mail.call("Email/query", filter=deep))["error"]["type"] == "unsupportedFilter"
    others = [f"x{i:05d}" for i in range(40000)]  # more than SQLite's 32766 parameters
    found = await mail.call("Email/query", filter={"inMailboxOtherThan": others})
    assert sorted(found["ids"]) == sorted(ids)
