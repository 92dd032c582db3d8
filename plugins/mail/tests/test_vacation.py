"""VacationResponse (RFC 8621 §8) and its RFC 3834 auto-replies."""

from __future__ import annotations

import time
from typing import Any

from jmap_host_mail.message import parse_message
from jmap_host_mail.vacation import auto_reply

from jmap_host.testing import api, running_server

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
VACATION = "urn:ietf:params:jmap:vacationresponse"
USING = [CORE, MAIL, SUBMISSION, VACATION]


async def call(http: Any, account: str, name: str, **args: Any) -> dict[str, Any]:
    result = await api(http, [[name, {"accountId": account, **args}, "c"]], using=USING)
    response = result["methodResponses"][0]
    return response[1] if response[0] == name else {"error": response[1]}


def incoming(*extra: str, sender: str = "Carol <carol@remote.example>", to: str = "") -> bytes:
    lines = [
        f"From: {sender}",
        f"To: {to or 'Bob <bob@example.org>'}",
        "Subject: Lunch?",
        "Message-ID: <m1@remote.example>",
        "References: <m0@remote.example>",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\nHi\r\n").encode()


async def test_singleton_get_and_set(jmap_config):
    """§8: exactly one object, id "singleton"; create and destroy are refused."""
    async with running_server(jmap_config) as server, server.client("bob") as http:
        account = (await http.get("/jmap/session")).json()["primaryAccounts"][MAIL]
        got = await call(http, account, "VacationResponse/get", ids=None)
        assert got["list"] == [
            {
                "id": "singleton",
                "isEnabled": False,
                "fromDate": None,
                "toDate": None,
                "subject": None,
                "textBody": None,
                "htmlBody": None,
            }
        ]
        result = await call(
            http,
            account,
            "VacationResponse/set",
            create={"x": {"isEnabled": True}},
            destroy=["singleton"],
        )
        assert result["notCreated"]["x"]["type"] == "singleton"
        assert result["notDestroyed"]["singleton"]["type"] == "singleton"
        result = await call(
            http,
            account,
            "VacationResponse/set",
            update={
                "singleton": {
                    "isEnabled": True,
                    "subject": "Away",
                    "toDate": "2100-01-01T00:00:00Z",
                }
            },
        )
        assert result["updated"] == {"singleton": None}
        bad = await call(
            http, account, "VacationResponse/set", update={"singleton": {"fromDate": "tomorrow"}}
        )
        assert bad["notUpdated"]["singleton"]["properties"] == ["fromDate"]
        missing = await call(http, account, "VacationResponse/get", ids=["other"])
        assert missing["notFound"] == ["other"]


async def test_auto_reply_rules(jmap_config):
    """RFC 3834: once per sender per period, never to lists, automatic mail, daemons,
    messages not addressed to the user, or outside the window; the reply's headers."""
    async with running_server(jmap_config) as server, server.client("bob") as http:
        account = (await http.get("/jmap/session")).json()["primaryAccounts"][MAIL]
        host = server.host

        async def reply_to(raw: bytes, **kw: Any) -> bytes | None:
            parsed = parse_message(raw)
            return await host.store.write(
                lambda db: auto_reply(db, host, account, parsed, raw, "bob@example.org", **kw)
            )

        assert await reply_to(incoming()) is None  # disabled
        await call(
            http,
            account,
            "VacationResponse/set",
            update={
                "singleton": {
                    "isEnabled": True,
                    "textBody": "On holiday.",
                    "htmlBody": "<p>On holiday.</p>",
                }
            },
        )
        for refused in (
            incoming("List-Id: <lunch.remote.example>"),
            incoming("Precedence: bulk"),
            incoming("Auto-Submitted: auto-generated"),
            incoming(sender="MAILER-DAEMON@remote.example"),
            incoming(sender="no-reply@remote.example"),
            incoming(to="someone@else.example"),
        ):
            assert await reply_to(refused) is None, refused
        assert await reply_to(incoming(), mail_from="") is None  # a bounce

        reply = await reply_to(incoming("Auto-Submitted: no"))
        assert reply is not None
        parsed = parse_message(reply)
        assert parsed.header("Auto-Submitted", "Text").strip() == "auto-replied"
        assert parsed.in_reply_to == ["m1@remote.example"]
        assert parsed.references == ["m0@remote.example", "m1@remote.example"]
        assert parsed.subject == "Auto: Lunch?"
        assert parsed.to == [{"name": None, "email": "carol@remote.example"}]
        assert parsed.from_ == [{"name": "Bob Example", "email": "bob@example.org"}]
        assert b"On holiday." in reply and b"text/html" in reply
        # Once per sender per period; the envelope sender is who is answered.
        assert await reply_to(incoming()) is None
        assert await reply_to(incoming(), mail_from="dan@remote.example") is not None
        assert await reply_to(incoming(), now=time.time() + 8 * 86400) is not None
        # Outside the window.
        await call(
            http,
            account,
            "VacationResponse/set",
            update={"singleton": {"toDate": "2000-01-01T00:00:00Z"}},
        )
        assert await reply_to(incoming(sender="erin@remote.example")) is None


async def test_vacation_reply_to_a_local_sender(jmap_config):
    """Alice writes to bob, who is away: his auto-reply lands in alice's Inbox, once."""
    import trio

    async with (
        running_server(jmap_config) as server,
        server.client("alice") as alice,
        server.client("bob") as bob,
    ):
        bob_account = (await bob.get("/jmap/session")).json()["primaryAccounts"][MAIL]
        await call(
            bob,
            bob_account,
            "VacationResponse/set",
            update={"singleton": {"isEnabled": True, "subject": "Out of office"}},
        )
        account = (await alice.get("/jmap/session")).json()["primaryAccounts"][MAIL]
        boxes = (await call(alice, account, "Mailbox/get", ids=None))["list"]
        roles = {m["role"]: m["id"] for m in boxes}
        identity = next(
            i["id"]
            for i in (await call(alice, account, "Identity/get", ids=None))["list"]
            if i["email"] == "alice@example.org"
        )
        for n in range(2):
            raw = (
                f"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: q{n}\r\n"
                f"Message-ID: <q{n}@example.org>\r\n\r\nHi\r\n"
            ).encode()
            upload = await alice.post(f"/jmap/upload/{account}/", content=raw)
            imported = await call(
                alice,
                account,
                "Email/import",
                emails={
                    "e": {"blobId": upload.json()["blobId"], "mailboxIds": {roles["drafts"]: True}}
                },
            )
            email_id = imported["created"]["e"]["id"]
            sent = await call(
                alice,
                account,
                "EmailSubmission/set",
                create={"s": {"identityId": identity, "emailId": email_id}},
            )
            assert sent["created"]["s"]["deliveryStatus"]["bob@example.org"]["delivered"] == "yes"

        async def inbox() -> list[str]:
            got = await call(alice, account, "Email/query", filter={"inMailbox": roles["inbox"]})
            return got["ids"]

        with trio.fail_after(10):
            while not await inbox():
                await trio.sleep(0.05)
        await trio.sleep(0.3)
        ids = await inbox()
        assert len(ids) == 1
        got = (
            await call(
                alice,
                account,
                "Email/get",
                ids=ids,
                properties=[
                    "subject",
                    "inReplyTo",
                    "header:Auto-Submitted:asText",
                    "header:Return-Path",
                ],
            )
        )["list"][0]
        assert got["subject"] == "Out of office"
        assert got["inReplyTo"] == ["q0@example.org"]
        assert got["header:Auto-Submitted:asText"].strip() == "auto-replied"
        assert got["header:Return-Path"].strip() == "<>"
