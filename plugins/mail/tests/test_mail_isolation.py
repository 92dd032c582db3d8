"""Isolation of mail accounts (security: "one account never sees another's data, blobs or
ids"), in the pattern of tests/test_cross_account.py: every mail method, and the download
URL, called with another account's ids (Emails, Threads, Mailboxes, blob ids of messages
and of parts, Identities, EmailSubmissions, the account id itself, state strings) answers
exactly as for ids that do not exist.  Each comparison is of the whole response body, with
the one id that differs masked.

Accounts: alice (member of sales) has personal mail, a Mailbox of her own, an Identity, an
EmailSubmission and a VacationResponse; bob (no group) has a little mail of his own; carol
(member of sales) sees the group's mail and nothing of alice's personal mail.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from jmap_host_mail.testing import lmtp_deliver

from jmap_host.directory import account_id_for
from jmap_host.testing import api, basic, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
VACATION = "urn:ietf:params:jmap:vacationresponse"
USING = [CORE, MAIL, SUBMISSION, VACATION]
SECRET_WORD = "zanzibarquux"  # only in alice's personal mail
GROUP_WORD = "plumtreefoo"  # only in the sales group's mail

EXTRA = """
[server.listener."lmtp"]
bind = ["127.0.0.1:0"]
protocol = "lmtp"

[[directory."memory".principals]]
name = "carol"
secret = "carol-password"
email = ["carol@example.org"]
member-of = ["sales"]
"""


def fake_id() -> str:
    return "x" + secrets.token_hex(8)  # the shape of a real id (objectstore.new_id)


def fake_blob_id() -> str:
    return "G" + secrets.token_hex(32)  # the shape of a real blob id (sha256)


def fake_account_id() -> str:
    return account_id_for("nobody-" + secrets.token_hex(4))


def masked(value: Any, secret: str) -> Any:
    """``value`` with ``secret`` replaced by <ID>: whole strings (so short state strings
    are masked only where they stand alone), and inside strings for real ids."""
    if isinstance(value, dict):
        return {masked(k, secret): masked(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, secret) for v in value]
    if isinstance(value, str):
        if value == secret:
            return "<ID>"
        if len(secret) >= 8:
            return value.replace(secret, "<ID>")
    return value


def assert_same(theirs: Any, missing: Any, their_id: str, missing_id: str) -> None:
    """The answer for another account's id equals the answer for a nonexistent one."""
    a = json.dumps(masked(theirs, their_id), sort_keys=True)
    b = json.dumps(masked(missing, missing_id), sort_keys=True)
    assert a == b, (theirs, missing)


class User:
    def __init__(self, server: Any, name: str, password: str):
        self.http = server.client(headers=basic(name, password))
        self.name = name

    async def __aenter__(self) -> User:
        await self.http.__aenter__()
        session = (await self.http.get("/jmap/session")).json()
        self.own = session["primaryAccounts"][MAIL]
        self.accounts = session["accounts"]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.__aexit__(*exc)

    def group(self) -> str:
        [group] = [a for a in self.accounts if a != self.own]
        return group

    async def session_state(self) -> str:
        return str((await self.http.get("/jmap/session")).json()["state"])

    async def calls(self, name: str, **args: Any) -> list:
        """One method call; the [name, arguments] of all its responses (call id dropped)."""
        response = await api(self.http, [[name, args, "c"]], using=USING)
        return [r[:2] for r in response["methodResponses"]]

    async def call(self, name: str, account: str | None = None, **args: Any) -> dict[str, Any]:
        """One method call that must succeed; its arguments."""
        [[got, result]] = (await self.calls(name, accountId=account or self.own, **args))[:1]
        assert got == name, (name, result)
        return dict(result)

    async def upload(self, account: str, data: bytes, media: str = "message/rfc822") -> str:
        response = await self.http.post(
            f"/jmap/upload/{account}/", content=data, headers={"Content-Type": media}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["blobId"])

    async def download(self, account: str, blob_id: str) -> Any:
        return await self.http.get(f"/jmap/download/{account}/{blob_id}/f.bin")

    async def roles(self, account: str | None = None) -> dict[str, str]:
        boxes = (await self.call("Mailbox/get", account, ids=None))["list"]
        return {m["role"]: m["id"] for m in boxes if m["role"]}

    async def import_message(
        self, raw: bytes, mailbox_ids: list[str], account: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        account = account or self.own
        blob = await self.upload(account, raw)
        result = await self.call(
            "Email/import",
            account,
            emails={"m": {"blobId": blob, "mailboxIds": dict.fromkeys(mailbox_ids, True), **extra}},
        )
        assert result["created"], result
        return dict(result["created"]["m"])

    async def states(self, account: str | None = None) -> dict[str, str]:
        """The state strings of every mail type in an account."""
        out = {}
        for type_name in ("Email", "Mailbox", "Thread", "Identity", "EmailSubmission"):
            out[type_name] = (await self.call(f"{type_name}/get", account, ids=[]))["state"]
        out["VacationResponse"] = (await self.call("VacationResponse/get", account, ids=[]))[
            "state"
        ]
        return out


def secret_message(subject: str, word: str, attachment: bytes, to: str) -> bytes:
    """A multipart message with a text part and an attachment (so it has part blobs)."""
    encoded = base64.b64encode(attachment).decode()
    return (
        f"From: Dana <dana@example.net>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.net>\r\nX-Secret: {word}\r\n"
        "Date: Tue, 24 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"The {word} plan is confidential.\r\n"
        "--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="plan.pdf"\r\n\r\n{encoded}\r\n'
        "--b1--\r\n"
    ).encode()


def plain_message(subject: str, body: str, sender: str, to: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.net>\r\n"
        f"Date: Tue, 24 Nov 2026 11:00:00 +0100\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
async def world(tmp_path):
    config = write_config(tmp_path, EXTRA)
    async with running_server(config) as server:
        async with (
            User(server, "alice", "alice-password") as alice,
            User(server, "bob", "bob-password") as bob,
            User(server, "carol", "carol-password") as carol,
        ):
            yield server, alice, bob, carol


async def alice_mail(alice: User) -> dict[str, Any]:
    """Alice's personal mail, Mailbox, blobs, Identity, EmailSubmission and vacation; many
    changes, so every state of hers is a number bob's account never reached."""
    roles = await alice.roles()
    created = await alice.call(
        "Mailbox/set", create={"p": {"name": f"Project {SECRET_WORD}", "parentId": None}}
    )
    mailbox = created["created"]["p"]["id"]
    first = await alice.import_message(
        secret_message(f"The {SECRET_WORD} plan", SECRET_WORD, b"%PDF alice secret 1", "alice"),
        [roles["inbox"], mailbox],
    )
    second = await alice.import_message(
        secret_message("Other news", SECRET_WORD, b"%PDF alice secret 2", "alice@example.org"),
        [mailbox],
        keywords={"$seen": True},
    )
    got = await alice.call(
        "Email/get",
        ids=[first["id"]],
        properties=["blobId", "threadId", "textBody", "attachments", "mailboxIds"],
    )
    email = got["list"][0]
    part_blobs = [p["blobId"] for p in email["textBody"] + email["attachments"]]
    assert len(set(part_blobs)) == 2 and email["blobId"] not in part_blobs

    # A draft with an uploaded attachment, sent through an EmailSubmission to carol.
    attached = await alice.upload(alice.own, b"alice's attached spreadsheet", "text/csv")
    unreferenced = await alice.upload(alice.own, b"alice's unreferenced upload", "text/plain")
    identity = (
        await alice.call(
            "Identity/set",
            create={"i": {"name": "Alice at work", "email": "alice@example.org"}},
        )
    )["created"]["i"]["id"]
    draft = await alice.call(
        "Email/set",
        create={
            "d": {
                "mailboxIds": {roles["drafts"]: True},
                "keywords": {"$draft": True, "$seen": True},
                "from": [{"name": "Alice", "email": "alice@example.org"}],
                "to": [{"name": "Carol", "email": "carol@example.org"}],
                "subject": f"Numbers {SECRET_WORD}",
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "bodyValues": {"t": {"value": f"See the {SECRET_WORD} sheet."}},
                "attachments": [{"blobId": attached, "type": "text/csv", "name": "n.csv"}],
            }
        },
    )
    draft_id = draft["created"]["d"]["id"]
    sent = await alice.call(
        "EmailSubmission/set", create={"s": {"identityId": identity, "emailId": draft_id}}
    )
    submission = sent["created"]["s"]["id"]
    vacation = await alice.call(
        "VacationResponse/set",
        update={"singleton": {"isEnabled": True, "subject": f"Away {SECRET_WORD}"}},
    )
    assert vacation["updated"] == {"singleton": None}
    # More changes of every type, so alice's states are beyond bob's.
    for i in range(6):
        await alice.call("Email/set", update={second["id"]: {f"keywords/k{i}": True}})
        await alice.call("Identity/set", update={identity: {"name": f"Alice {i}"}})
        await alice.call("Mailbox/set", update={mailbox: {"sortOrder": i + 1}})
    for i in range(3):
        await alice.import_message(
            plain_message(f"More {i}", SECRET_WORD, "dana@example.net", "alice@example.org"),
            [roles["inbox"]],
        )
    return {
        "roles": roles,
        "mailbox": mailbox,
        "email": first["id"],
        "email2": second["id"],
        "draft": draft_id,
        "thread": email["threadId"],
        "blob": email["blobId"],
        "parts": part_blobs,
        "attached": attached,
        "unreferenced": unreferenced,
        "identity": identity,
        "submission": submission,
        "states": await alice.states(),
    }


async def bob_mail(bob: User) -> dict[str, Any]:
    roles = await bob.roles()
    email = await bob.import_message(
        plain_message("Lunch", "Sandwiches at noon.", "erin@example.net", "bob@example.org"),
        [roles["inbox"]],
    )
    identities = (await bob.call("Identity/get", ids=None))["list"]
    return {
        "roles": roles,
        "email": email["id"],
        "identity": identities[0]["id"],
        "states": await bob.states(),
    }


async def test_mail_methods_answer_for_another_accounts_ids_as_for_missing_ones(world):
    _server, alice, bob, _carol = world
    a = await alice_mail(alice)
    b = await bob_mail(bob)
    inbox = b["roles"]["inbox"]
    for type_name, state in b["states"].items():
        if type_name != "VacationResponse":
            assert int(a["states"][type_name]) > int(state), type_name

    async def both(
        their: str, fake: str, name: str, build: Callable[[str], dict[str, Any]]
    ) -> list:
        """Call ``name`` as bob with alice's id and with a nonexistent one; compare."""
        theirs = await bob.calls(name, **build(their))
        missing = await bob.calls(name, **build(fake))
        assert_same(theirs, missing, their, fake)
        return theirs

    own = bob.own

    # -- Email ids ---------------------------------------------------------------------------
    for email in (a["email"], a["email2"], a["draft"]):
        fake = fake_id()
        [[name, got]] = await both(
            email,
            fake,
            "Email/get",
            lambda i: {
                "accountId": own, "ids": [i, b["email"]], "fetchAllBodyValues": True,
                "properties": ["id", "blobId", "threadId", "mailboxIds", "subject", "bodyValues",
                               "attachments", "header:X-Secret"],
            },
        )  # fmt: skip
        assert name == "Email/get" and got["notFound"] == [email] and len(got["list"]) == 1
        [[_, got]] = await both(
            email,
            fake,
            "Email/set",
            lambda i: {"accountId": own, "update": {i: {"keywords/$flagged": True}}},
        )
        assert got["notUpdated"] == {email: {"type": "notFound"}}
        assert got["newState"] == b["states"]["Email"]
        await both(
            email,
            fake,
            "Email/set",
            lambda i: {"accountId": own, "update": {i: {"mailboxIds": {inbox: True}}}},
        )
        [[_, got]] = await both(
            email, fake, "Email/set", lambda i: {"accountId": own, "destroy": [i]}
        )
        assert got["notDestroyed"] == {email: {"type": "notFound"}}
        [[name, got]] = await both(
            email, fake, "Email/query", lambda i: {"accountId": own, "anchor": i}
        )
        assert [name, got["type"]] == ["error", "anchorNotFound"]
        [[name, got]] = await both(
            email,
            fake,
            "Email/queryChanges",
            lambda i: {
                "accountId": own, "sinceQueryState": "0", "upToId": i, "calculateTotal": True,
            },
        )  # fmt: skip
        assert name == "Email/queryChanges" and got["total"] == 1
        [[name, got]] = await both(
            email,
            fake,
            "SearchSnippet/get",
            lambda i: {"accountId": own, "filter": {"text": SECRET_WORD}, "emailIds": [i]},
        )
        assert name == "SearchSnippet/get" and got["list"] == [] and got["notFound"] == [email]
        # An EmailSubmission of alice's Email, with bob's own Identity.
        [[_, got]] = await both(
            email,
            fake,
            "EmailSubmission/set",
            lambda i: {
                "accountId": own,
                "create": {"s": {"identityId": b["identity"], "emailId": i}},
            },
        )
        assert got["notCreated"]["s"]["type"] == "invalidProperties"
        await both(
            email,
            fake,
            "EmailSubmission/query",
            lambda i: {"accountId": own, "filter": {"emailIds": [i]}, "calculateTotal": True},
        )

    # -- Thread ids ------------------------------------------------------------------------
    fake = fake_id()
    [[name, got]] = await both(
        a["thread"], fake, "Thread/get", lambda i: {"accountId": own, "ids": [i]}
    )
    assert name == "Thread/get" and got["notFound"] == [a["thread"]] and got["list"] == []
    await both(
        a["thread"],
        fake,
        "EmailSubmission/query",
        lambda i: {"accountId": own, "filter": {"threadIds": [i]}},
    )

    # -- Mailbox ids -----------------------------------------------------------------------
    for mailbox in (a["mailbox"], a["roles"]["inbox"], a["roles"]["drafts"]):
        fake = fake_id()
        [[name, got]] = await both(
            mailbox, fake, "Mailbox/get", lambda i: {"accountId": own, "ids": [i]}
        )
        assert name == "Mailbox/get" and got["notFound"] == [mailbox]
        for args in (
            lambda i: {"accountId": own, "update": {i: {"name": "mine now"}}},
            lambda i: {"accountId": own, "destroy": [i], "onDestroyRemoveEmails": True},
            lambda i: {"accountId": own, "create": {"c": {"name": "child", "parentId": i}}},
        ):
            [[name, got]] = await both(mailbox, fake, "Mailbox/set", args)
            assert name == "Mailbox/set" and got["newState"] == b["states"]["Mailbox"]
        [[name, got]] = await both(
            mailbox,
            fake,
            "Mailbox/query",
            lambda i: {"accountId": own, "filter": {"parentId": i}, "calculateTotal": True},
        )
        assert name == "Mailbox/query" and got["total"] == 0
        [[name, got]] = await both(
            mailbox, fake, "Mailbox/query", lambda i: {"accountId": own, "anchor": i}
        )
        assert [name, got["type"]] == ["error", "anchorNotFound"]
        await both(
            mailbox,
            fake,
            "Mailbox/query",
            lambda i: {"accountId": own, "sortAsTree": True, "filterAsTree": True, "anchor": i},
        )
        await both(
            mailbox,
            fake,
            "Mailbox/queryChanges",
            lambda i: {"accountId": own, "sinceQueryState": "0", "upToId": i},
        )
        for condition in ("inMailbox", "inMailboxOtherThan"):
            [[name, got]] = await both(
                mailbox,
                fake,
                "Email/query",
                lambda i, c=condition: {
                    "accountId": own,
                    "filter": {c: i if c == "inMailbox" else [i]},
                    "calculateTotal": True,
                },
            )
            assert name == "Email/query"
        # Into alice's Mailbox: bob's own Email moved, a new Email created, one imported.
        [[_, got]] = await both(
            mailbox,
            fake,
            "Email/set",
            lambda i: {"accountId": own, "update": {b["email"]: {"mailboxIds": {i: True}}}},
        )
        assert got["notUpdated"][b["email"]]["type"] == "invalidProperties"
        [[_, got]] = await both(
            mailbox,
            fake,
            "Email/set",
            lambda i: {
                "accountId": own,
                "create": {"k": {"mailboxIds": {i: True}, "subject": "hi",
                                 "bodyValues": {"1": {"value": "x"}},
                                 "textBody": [{"partId": "1", "type": "text/plain"}]}},
            },
        )  # fmt: skip
        assert got["notCreated"]["k"]["type"] == "invalidProperties"
        bobs_blob = await bob.upload(own, plain_message("Mine", "mine", "f@example.net", "bob"))
        [[_, got]] = await both(
            mailbox,
            fake,
            "Email/import",
            lambda i, blob=bobs_blob: {
                "accountId": own, "emails": {"k": {"blobId": blob, "mailboxIds": {i: True}}},
            },
        )  # fmt: skip
        assert got["notCreated"]["k"]["type"] == "invalidProperties"

    # -- blob ids: the message, its parts, an attached upload, an unreferenced upload -------
    for blob in (a["blob"], *a["parts"], a["attached"], a["unreferenced"]):
        fake = fake_blob_id()
        [[name, got]] = await both(
            blob,
            fake,
            "Email/parse",
            lambda i: {"accountId": own, "blobIds": [i], "fetchAllBodyValues": True},
        )
        assert name == "Email/parse" and got["notFound"] == [blob] and got["parsed"] is None
        [[_, got]] = await both(
            blob,
            fake,
            "Email/import",
            lambda i: {"accountId": own, "emails": {"k": {"blobId": i,
                                                           "mailboxIds": {inbox: True}}}},
        )  # fmt: skip
        assert got["notCreated"]["k"]["type"] == "invalidProperties"
        [[_, got]] = await both(
            blob,
            fake,
            "Email/set",
            lambda i: {
                "accountId": own,
                "create": {"k": {"mailboxIds": {inbox: True}, "subject": "fwd",
                                 "attachments": [{"blobId": i, "type": "application/pdf"}]}},
            },
        )  # fmt: skip
        assert got["notCreated"]["k"]["type"] == "blobNotFound"
        assert got["notCreated"]["k"]["notFound"] == [blob]
        await both(
            blob,
            fake,
            "Email/set",
            lambda i: {
                "accountId": own,
                "create": {"k": {"mailboxIds": {inbox: True},
                                 "bodyStructure": {"type": "message/rfc822", "blobId": i}}},
            },
        )  # fmt: skip
        # Downloads in bob's own account, and in alice's (as in an account that is none).
        theirs, missing = await bob.download(own, blob), await bob.download(own, fake)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.content == missing.content
        assert theirs.headers.get("content-type") == missing.headers.get("content-type")
        nobody = fake_account_id()
        theirs = await bob.download(alice.own, blob)
        missing = await bob.download(nobody, blob)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.content == missing.content

    # -- Identity ids ------------------------------------------------------------------------
    bob_identities = (await bob.call("Identity/get", ids=None))["list"]
    alice_identities = (await alice.call("Identity/get", ids=None))["list"]
    for identity in [i["id"] for i in alice_identities]:
        fake = fake_id()
        [[name, got]] = await both(
            identity, fake, "Identity/get", lambda i: {"accountId": own, "ids": [i]}
        )
        assert name == "Identity/get" and got["notFound"] == [identity]
        [[_, got]] = await both(
            identity,
            fake,
            "Identity/set",
            lambda i: {"accountId": own, "update": {i: {"name": "Bob now"}}},
        )
        assert got["notUpdated"] == {identity: {"type": "notFound"}}
        [[_, got]] = await both(
            identity, fake, "Identity/set", lambda i: {"accountId": own, "destroy": [i]}
        )
        assert got["notDestroyed"] == {identity: {"type": "notFound"}}
        [[_, got]] = await both(
            identity,
            fake,
            "EmailSubmission/set",
            lambda i: {"accountId": own, "create": {"s": {"identityId": i, "emailId": b["email"]}}},
        )
        assert got["notCreated"]["s"]["type"] == "invalidProperties"
        await both(
            identity,
            fake,
            "EmailSubmission/query",
            lambda i: {"accountId": own, "filter": {"identityIds": [i]}},
        )
    # Alice's addresses are not bob's to claim: as for any address that is not his.
    [[_, got]] = await both(
        "alice@example.org",
        "nobody@example.org",
        "Identity/set",
        lambda address: {"accountId": own, "create": {"i": {"email": address}}},
    )
    assert got["notCreated"]["i"]["type"] == "forbiddenFrom"
    assert [i["email"] for i in bob_identities] == ["bob@example.org"]

    # -- EmailSubmission ids ----------------------------------------------------------------
    fake = fake_id()
    [[name, got]] = await both(
        a["submission"], fake, "EmailSubmission/get", lambda i: {"accountId": own, "ids": [i]}
    )
    assert name == "EmailSubmission/get" and got["notFound"] == [a["submission"]]
    [[_, got]] = await both(
        a["submission"],
        fake,
        "EmailSubmission/set",
        lambda i: {
            "accountId": own,
            "update": {i: {"undoStatus": "canceled"}},
            "onSuccessUpdateEmail": {i: {"keywords/$draft": None}},
        },
    )
    assert got["notUpdated"] == {a["submission"]: {"type": "notFound"}}
    responses = await both(
        a["submission"],
        fake,
        "EmailSubmission/set",
        lambda i: {"accountId": own, "destroy": [i], "onSuccessDestroyEmail": [i]},
    )
    assert len(responses) == 1  # no implicit Email/set: nothing succeeded
    await both(
        a["submission"],
        fake,
        "EmailSubmission/query",
        lambda i: {"accountId": own, "anchor": i},
    )
    await both(
        a["submission"],
        fake,
        "EmailSubmission/queryChanges",
        lambda i: {"accountId": own, "sinceQueryState": "0", "upToId": i},
    )

    # -- state strings: alice's, in bob's account, as garbage ------------------------------
    garbage = "999999"
    for type_name in ("Email", "Mailbox", "Thread", "Identity", "EmailSubmission"):
        [[name, got]] = await both(
            a["states"][type_name],
            garbage,
            f"{type_name}/changes",
            lambda s, t=type_name: {"accountId": own, "sinceState": s},
        )
        assert [name, got["type"]] == ["error", "cannotCalculateChanges"], type_name
    for type_name in ("Email", "Mailbox", "EmailSubmission"):
        [[name, got]] = await both(
            a["states"][type_name],
            garbage,
            f"{type_name}/queryChanges",
            lambda s: {"accountId": own, "sinceQueryState": s},
        )
        assert [name, got["type"]] == ["error", "cannotCalculateChanges"], type_name
    for type_name, args in (
        ("Email", {"update": {b["email"]: {"keywords/$seen": True}}}),
        ("Mailbox", {"update": {inbox: {"sortOrder": 9}}}),
        ("Identity", {"update": {b["identity"]: {"name": "B"}}}),
        ("VacationResponse", {"update": {"singleton": {"isEnabled": True}}}),
    ):
        [[name, got]] = await both(
            a["states"][type_name],
            garbage,
            f"{type_name}/set",
            lambda s, args=args: {"accountId": own, "ifInState": s, **args},
        )
        if a["states"][type_name] != b["states"][type_name]:
            assert [name, got["type"]] == ["error", "stateMismatch"], type_name
    # Email/import and Email/copy's ifInState, with alice's Email state.
    await both(
        a["states"]["Email"],
        garbage,
        "Email/import",
        lambda s: {"accountId": own, "ifInState": s, "emails": {}},
    )

    # -- alice's account id: accountNotFound / fromAccountNotFound, as for none ------------
    nobody = fake_account_id()
    for name, args in [
        ("Email/get", {"ids": [a["email"]]}),
        ("Email/set", {"update": {a["email"]: {"keywords/$seen": True}}}),
        ("Email/set", {"destroy": [a["email"]]}),
        ("Email/changes", {"sinceState": "0"}),
        ("Email/query", {"filter": {"text": SECRET_WORD}}),
        ("Email/queryChanges", {"sinceQueryState": "0"}),
        ("Email/import", {"emails": {"k": {"blobId": a["blob"], "mailboxIds": {inbox: True}}}}),
        ("Email/parse", {"blobIds": [a["blob"]]}),
        ("Email/copy", {"fromAccountId": own, "create": {"k": {"id": b["email"]}}}),
        ("Thread/get", {"ids": [a["thread"]]}),
        ("Thread/changes", {"sinceState": "0"}),
        ("Mailbox/get", {"ids": None}),
        ("Mailbox/set", {"create": {"m": {"name": "x"}}}),
        ("Mailbox/changes", {"sinceState": "0"}),
        ("Mailbox/query", {}),
        ("Mailbox/queryChanges", {"sinceQueryState": "0"}),
        ("SearchSnippet/get", {"filter": None, "emailIds": [a["email"]]}),
        ("Identity/get", {"ids": None}),
        ("Identity/set", {"create": {"i": {"email": "alice@example.org"}}}),
        ("Identity/changes", {"sinceState": "0"}),
        ("EmailSubmission/get", {"ids": None}),
        ("EmailSubmission/set", {"create": {"s": {"identityId": a["identity"],
                                                  "emailId": a["email"]}}}),
        ("EmailSubmission/changes", {"sinceState": "0"}),
        ("EmailSubmission/query", {}),
        ("EmailSubmission/queryChanges", {"sinceQueryState": "0"}),
        ("VacationResponse/get", {"ids": None}),
        ("VacationResponse/set", {"update": {"singleton": {"isEnabled": False}}}),
    ]:  # fmt: skip
        theirs = await bob.calls(name, accountId=alice.own, **args)
        missing = await bob.calls(name, accountId=nobody, **args)
        assert_same(theirs, missing, alice.own, nobody)
        assert theirs == [["error", {"type": "accountNotFound"}]], (name, theirs)
    for their, fake in ((alice.own, nobody),):
        [[name, got]] = await both(
            their,
            fake,
            "Email/copy",
            lambda f: {
                "accountId": own, "fromAccountId": f,
                "create": {"k": {"id": a["email"], "mailboxIds": {inbox: True}}},
            },
        )  # fmt: skip
        assert [name, got["type"]] == ["error", "fromAccountNotFound"]

    # Nothing of alice's changed, and bob's account did not move.
    assert await alice.states() == a["states"]
    assert await bob.states() == b["states"]
    vacation = (await alice.call("VacationResponse/get", ids=None))["list"][0]
    assert vacation["isEnabled"] is True and vacation["subject"] == f"Away {SECRET_WORD}"
    got = await alice.call("Email/get", ids=[a["email2"]], properties=["keywords", "mailboxIds"])
    assert got["list"][0]["mailboxIds"] == {a["mailbox"]: True}
    assert (await alice.download(alice.own, a["parts"][1])).status_code == 200


async def test_counts_search_and_states_leave_out_other_accounts_mail(world):
    """Bob's Email/query totals, Mailbox counts and full-text search know only his mail;
    mail alice receives moves none of the state strings bob sees."""
    server, alice, bob, _carol = world
    a = await alice_mail(alice)
    b = await bob_mail(bob)
    inbox = b["roles"]["inbox"]

    got = await bob.call("Email/query", calculateTotal=True)
    assert got["ids"] == [b["email"]] and got["total"] == 1
    for condition in (
        {"text": SECRET_WORD},
        {"body": SECRET_WORD},
        {"subject": SECRET_WORD},
        {"from": "dana@example.net"},
        {"to": "alice"},
        {"header": ["X-Secret"]},
        {"header": ["X-Secret", SECRET_WORD]},
        {"someInThreadHaveKeyword": "k1"},
        {"hasKeyword": "$draft"},
    ):
        got = await bob.call("Email/query", filter=condition, calculateTotal=True)
        assert got["ids"] == [] and got["total"] == 0, condition
        got = await bob.call("Email/query", filter=condition, collapseThreads=True)
        assert got["ids"] == [], condition
        mine = await alice.call("Email/query", filter=condition, calculateTotal=True)
        assert mine["total"] > 0, condition  # the condition does find alice's mail
    boxes = (await bob.call("Mailbox/get", ids=None))["list"]
    assert sorted(m["role"] for m in boxes) == sorted(b["roles"])
    counts = {m["role"]: [m[c] for c in ("totalEmails", "unreadEmails", "totalThreads",
                                          "unreadThreads")] for m in boxes}  # fmt: skip
    assert counts.pop("inbox") == [1, 1, 1, 1]
    assert all(c == [0, 0, 0, 0] for c in counts.values()), counts
    assert (await bob.call("Thread/get", ids=[]))["state"] == b["states"]["Thread"]
    assert (await bob.call("EmailSubmission/get", ids=None))["list"] == []
    assert (await bob.call("EmailSubmission/query", calculateTotal=True))["total"] == 0
    vacation = (await bob.call("VacationResponse/get", ids=None))["list"][0]
    assert vacation["isEnabled"] is False and vacation["subject"] is None
    snippets = await bob.call(
        "SearchSnippet/get", filter={"text": SECRET_WORD}, emailIds=[b["email"]]
    )
    assert snippets["list"] == [{"emailId": b["email"], "subject": None, "preview": None}]

    # Mail for alice (over LMTP, to her address and her alias) changes nothing bob sees.
    bob_session = await bob.session_state()
    for rcpt in ("alice@example.org", "sales@example.org"):
        await lmtp_deliver(
            server,
            rcpt,
            plain_message(f"Hello {SECRET_WORD}", SECRET_WORD, "dana@example.net", rcpt),
            mail_from="dana@example.net",
        )
    after = await alice.states()
    assert int(after["Email"]) > int(a["states"]["Email"])
    assert await bob.states() == b["states"]
    assert await bob.session_state() == bob_session
    got = await bob.call("Email/changes", sinceState=b["states"]["Email"])
    assert got["created"] == got["updated"] == got["destroyed"] == []
    got = await bob.call("Mailbox/changes", sinceState=b["states"]["Mailbox"])
    assert got["created"] == got["updated"] == got["destroyed"] == []
    got = await bob.call("Mailbox/get", ids=[inbox], properties=["totalEmails"])
    assert got["list"][0]["totalEmails"] == 1
    assert (await bob.call("Email/query", calculateTotal=True))["total"] == 1


async def test_a_group_member_sees_the_group_mail_but_not_a_members_personal_mail(world):
    server, alice, bob, carol = world
    a = await alice_mail(alice)
    sales = alice.group()
    assert carol.group() == sales and list(bob.accounts) == [bob.own]
    group_roles = await alice.roles(sales)
    carol_roles = await carol.roles()
    # Mail for the group: one imported by alice into the group account, one delivered.
    group_email = await alice.import_message(
        secret_message("Team plan", GROUP_WORD, b"%PDF team plan", "sales-team@example.org"),
        [group_roles["inbox"]],
        account=sales,
    )
    await lmtp_deliver(
        server,
        "sales-team@example.org",
        plain_message(f"Team {GROUP_WORD}", GROUP_WORD, "dana@example.net", "sales-team"),
        mail_from="dana@example.net",
    )

    # Carol sees the group's mail, its blobs and its search results.
    found = await carol.call("Email/query", sales, filter={"text": GROUP_WORD}, calculateTotal=True)
    assert found["total"] == 2 and group_email["id"] in found["ids"]
    got = await carol.call("Email/get", sales, ids=[group_email["id"]], properties=["blobId"])
    assert (await carol.download(sales, got["list"][0]["blobId"])).status_code == 200
    # ... and none of alice's personal mail: in the group account nothing; in her own only
    # the message alice sent her (her own copy, with its own ids).
    got = await carol.call("Email/query", sales, filter={"text": SECRET_WORD})
    assert got["ids"] == []
    got = await carol.call("Email/query", carol.own, filter={"text": SECRET_WORD})
    assert len(got["ids"]) == 1 and got["ids"][0] != a["draft"]
    counts = await carol.call("Mailbox/get", sales, ids=[group_roles["inbox"]])
    assert counts["list"][0]["totalEmails"] == 2

    async def both(their: str, fake: str, name: str, build: Callable[[str], dict]) -> list:
        theirs = await carol.calls(name, **build(their))
        missing = await carol.calls(name, **build(fake))
        assert_same(theirs, missing, their, fake)
        return theirs

    for email in (a["email"], a["draft"]):
        fake = fake_id()
        [[_, got]] = await both(
            email, fake, "Email/get", lambda i: {"accountId": sales, "ids": [i]}
        )
        assert got["notFound"] == [email]
        # Email/copy from the group account (which carol may use) of alice's personal Email.
        [[_, got]] = await both(
            email,
            fake,
            "Email/copy",
            lambda i: {
                "accountId": carol.own, "fromAccountId": sales,
                "create": {"k": {"id": i, "mailboxIds": {carol_roles["inbox"]: True}}},
            },
        )  # fmt: skip
        assert got["notCreated"]["k"]["type"] == "notFound"
        await both(
            email,
            fake,
            "Email/set",
            lambda i: {"accountId": sales, "update": {i: {"keywords/$seen": True}}},
        )
    for mailbox in (a["mailbox"], a["roles"]["inbox"]):
        fake = fake_id()
        await both(mailbox, fake, "Mailbox/get", lambda i: {"accountId": sales, "ids": [i]})
        await both(
            mailbox,
            fake,
            "Email/set",
            lambda i: {
                "accountId": sales,
                "update": {group_email["id"]: {"mailboxIds": {i: True}}},
            },
        )
    fake = fake_id()
    await both(a["thread"], fake, "Thread/get", lambda i: {"accountId": sales, "ids": [i]})
    await both(a["identity"], fake, "Identity/get", lambda i: {"accountId": sales, "ids": [i]})
    await both(
        a["submission"], fake, "EmailSubmission/get", lambda i: {"accountId": sales, "ids": [i]}
    )
    for blob in (a["blob"], *a["parts"], a["unreferenced"]):
        fake = fake_blob_id()
        [[_, got]] = await both(
            blob, fake, "Email/parse", lambda i: {"accountId": sales, "blobIds": [i]}
        )
        assert got["notFound"] == [blob]
        await both(
            blob,
            fake,
            "Email/import",
            lambda i: {"accountId": sales,
                       "emails": {"k": {"blobId": i, "mailboxIds": {group_roles["inbox"]: True}}}},
        )  # fmt: skip
        for account in (sales, carol.own):
            theirs, missing = (
                await carol.download(account, blob),
                await carol.download(account, fake),
            )
            assert theirs.status_code == missing.status_code == 404
            assert theirs.content == missing.content
    # Alice's personal account itself: accountNotFound for carol too.
    [[name, got]] = await carol.calls("Email/get", accountId=alice.own, ids=[a["email"]])
    assert [name, got] == ["error", {"type": "accountNotFound"}]
    # Alice's personal Identities are hers: the group account's are the group's addresses.
    identities = (await carol.call("Identity/get", sales, ids=None))["list"]
    assert [i["email"] for i in identities] == ["sales-team@example.org"]
