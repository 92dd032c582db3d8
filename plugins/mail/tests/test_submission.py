"""EmailSubmission (RFC 8621 §7) over real HTTP: local delivery into another account's
Inbox, remote delivery through a relay (a tiny SMTP sink on 127.0.0.1), the envelope
rules, the §7.5 SetErrors, onSuccessUpdateEmail / onSuccessDestroyEmail, query."""

from __future__ import annotations

import socketserver
import threading
from typing import Any

import pytest
from jmap_host_mail.testing import upload

from jmap_host.testing import api, eventually, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
USING = [CORE, MAIL, SUBMISSION]


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps what it is sent.  RCPT TO an address whose
    local part starts with "reject" is refused with 550; "later" with 451."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                mail_from, rcpts = None, []
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    command = line.decode("utf-8", "replace").strip()
                    verb = command[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250-sink")
                        self.reply("250 8BITMIME")
                    elif verb == "MAIL":
                        mail_from, rcpts = command.split(":", 1)[1].strip(), []
                        self.reply("250 2.1.0 ok")
                    elif verb == "RCPT":
                        address = command.split(":", 1)[1].strip().strip("<>")
                        if address.startswith("reject"):
                            self.reply("550-5.1.1 no such")
                            self.reply("550 5.1.1 user here")
                        elif address.startswith("later"):
                            self.reply("451 4.3.0 try later")
                        else:
                            rcpts.append(address)
                            self.reply("250 2.1.5 ok")
                    elif verb == "DATA":
                        self.reply("354 go ahead")
                        data = b""
                        while True:
                            chunk = self.rfile.readline()
                            if chunk in (b".\r\n", b""):
                                break
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        sink.messages.append({"from": mail_from, "to": rcpts, "data": data})
                        self.reply("250 2.0.0 queued as 42")
                    elif verb == "RSET":
                        mail_from, rcpts = None, []
                        self.reply("250 ok")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 5.5.2 what")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink():
    server = SmtpSink()
    yield server
    server.close()


def draft(
    subject: str,
    *,
    sender: str = "Alice <alice@example.org>",
    to: str = "Bob <bob@example.org>",
    cc: str | None = None,
    bcc: str | None = None,
    extra: list[str] = (),  # type: ignore[assignment]
) -> bytes:
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        "Date: Tue, 24 Nov 2026 10:00:00 +0100",
        f"Message-ID: <{subject}@example.org>",
    ]
    if cc:
        lines.append(f"Cc: {cc}")
    if bcc:
        lines.append(f"Bcc: {bcc}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\nHello there\r\n").encode()


class Client:
    def __init__(self, http: Any, account: str) -> None:
        self.http = http
        self.account = account
        self.roles: dict[str, str] = {}
        self.identity = ""
        self.address = ""

    async def request(self, calls: list[list[Any]]) -> list[list[Any]]:
        for c in calls:
            c[1].setdefault("accountId", self.account)
        return (await api(self.http, calls, using=USING))["methodResponses"]

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        response = (await self.request([[name, args, "c"]]))[0]
        return response[1] if response[0] == name else {"error": response[1]}

    async def setup(self) -> None:
        boxes = (await self.call("Mailbox/get", ids=None))["list"]
        self.roles = {m["role"]: m["id"] for m in boxes if m["role"]}
        identities = (await self.call("Identity/get", ids=None))["list"]
        self.identity = next(i["id"] for i in identities if i["email"] == self.address)

    async def save_draft(self, raw: bytes) -> str:
        result = await self.call(
            "Email/import",
            emails={
                "d": {
                    "blobId": await upload(self.http, self.account, raw),
                    "mailboxIds": {self.roles["drafts"]: True},
                    "keywords": {"$draft": True, "$seen": True},
                }
            },
        )
        return result["created"]["d"]["id"]

    async def submit(self, email_id: str, **extra: Any) -> dict[str, Any]:
        obj = {"identityId": self.identity, "emailId": email_id, **extra}
        return await self.call("EmailSubmission/set", create={"s": obj})


async def connect(server: Any, user: str) -> Client:
    http = server.client(user)
    await http.__aenter__()
    session = (await http.get("/jmap/session")).json()
    client = Client(http, session["primaryAccounts"][MAIL])
    client.address = f"{user}@example.org"
    await client.setup()
    return client


def relay_config(tmp_path: Any, port: int) -> Any:
    return write_config(
        tmp_path,
        f"""
        [plugins.mail.smtp]
        host = "127.0.0.1"
        port = {port}
        security = "none"
        timeout = "5s"

        [plugins.mail.submission]
        retry-interval = "1s"
        max-attempts = 2
        """,
    )


async def test_send_local_and_remote_with_on_success_update(tmp_path, sink):
    """A draft to bob (local), carol (remote) and a Bcc: bob finds it in his Inbox, the
    relay gets it without the Bcc header, the draft moves to Sent without $draft."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice")
        bob = await connect(server, "bob")
        email_id = await alice.save_draft(
            draft("hello", cc="carol@remote.example", bcc="dave@remote.example")
        )
        responses = await alice.request(
            [
                [
                    "EmailSubmission/set",
                    {
                        "create": {"k1": {"identityId": alice.identity, "emailId": email_id}},
                        "onSuccessUpdateEmail": {
                            "#k1": {
                                f"mailboxIds/{alice.roles['drafts']}": None,
                                f"mailboxIds/{alice.roles['sent']}": True,
                                "keywords/$draft": None,
                            }
                        },
                    },
                    "0",
                ]
            ]
        )
        assert [r[0] for r in responses] == ["EmailSubmission/set", "Email/set"]
        assert all(r[2] == "0" for r in responses)
        created = responses[0][1]["created"]["k1"]
        assert created["undoStatus"] == "final"  # bob already has it
        assert created["envelope"] == {
            "mailFrom": {"email": "alice@example.org", "parameters": None},
            "rcptTo": [
                {"email": "bob@example.org", "parameters": None},
                {"email": "carol@remote.example", "parameters": None},
                {"email": "dave@remote.example", "parameters": None},
            ],
        }
        status = created["deliveryStatus"]
        assert status["bob@example.org"]["delivered"] == "yes"
        assert status["carol@remote.example"]["delivered"] == "queued"
        assert responses[1][1]["updated"] == {email_id: None}
        moved = (
            await alice.call("Email/get", ids=[email_id], properties=["mailboxIds", "keywords"])
        )["list"][0]
        assert moved["mailboxIds"] == {alice.roles["sent"]: True}
        assert moved["keywords"] == {"$seen": True}

        found = await bob.call("Email/query", filter={"inMailbox": bob.roles["inbox"]})
        assert len(found["ids"]) == 1
        got = (
            await bob.call("Email/get", ids=found["ids"], properties=["subject", "bcc", "keywords"])
        )["list"][0]
        assert got["subject"] == "hello"
        assert got["bcc"] is None  # §7.5: Bcc removed during delivery
        assert got["keywords"] == {}

        async def relayed_to_sink() -> bool:
            return bool(sink.messages)

        await eventually(relayed_to_sink)
        sent = sink.messages[0]
        assert sent["from"] == "<alice@example.org>"
        assert sorted(sent["to"]) == ["carol@remote.example", "dave@remote.example"]
        assert b"Subject: hello" in sent["data"]
        assert b"Bcc:" not in sent["data"]

        submission_id = created["id"]

        async def relayed() -> Any:
            got = await alice.call("EmailSubmission/get", ids=[submission_id])
            record = got["list"][0]
            carol = record["deliveryStatus"]["carol@remote.example"]
            return record if carol["delivered"] != "queued" else None

        record = await eventually(relayed)
        carol = record["deliveryStatus"]["carol@remote.example"]
        assert carol == {
            "smtpReply": "250 2.0.0 queued as 42",
            "delivered": "unknown",
            "displayed": "unknown",
        }
        assert record["threadId"] and record["sendAt"].endswith("Z")
        await alice.http.aclose()
        await bob.http.aclose()


async def test_relay_refusals_become_delivery_status(tmp_path, sink):
    """A 550 at RCPT is delivered "no" with the joined multi-line reply; a 451 is retried
    and given up after max-attempts."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice")
        email_id = await alice.save_draft(
            draft("refused", to="reject@remote.example, later@remote.example, ok@remote.example")
        )
        result = await alice.submit(email_id)
        submission_id = result["created"]["s"]["id"]
        assert result["created"]["s"]["undoStatus"] == "pending"

        async def settled() -> Any:
            got = await alice.call("EmailSubmission/get", ids=[submission_id])
            record = got["list"][0]
            states = {s["delivered"] for s in record["deliveryStatus"].values()}
            return record if "queued" not in states else None

        record = await eventually(settled)
        status = record["deliveryStatus"]
        assert status["reject@remote.example"] == {
            "smtpReply": "550 5.1.1 no such user here",
            "delivered": "no",
            "displayed": "unknown",
        }
        assert status["later@remote.example"]["delivered"] == "no"
        assert status["later@remote.example"]["smtpReply"] == "451 4.3.0 try later"
        assert status["ok@remote.example"]["delivered"] == "unknown"
        assert record["undoStatus"] == "final"
        assert len(sink.messages) == 1 and sink.messages[0]["to"] == ["ok@remote.example"]
        # final: too late to cancel
        cancel = await alice.call(
            "EmailSubmission/set", update={submission_id: {"undoStatus": "canceled"}}
        )
        assert cancel["notUpdated"][submission_id]["type"] == "cannotUnsend"
        await alice.http.aclose()


async def test_set_errors(jmap_config):
    """§7.5 and §9.6: forbiddenFrom, forbiddenMailFrom, noRecipients, invalidRecipients
    (bad syntax, and remote addresses with no relay configured), invalidEmail,
    invalidProperties for unknown ids, unsupported envelope parameters."""
    async with running_server(jmap_config) as server:
        alice = await connect(server, "alice")
        foreign = await alice.save_draft(draft("foreign", sender="Mallory <mallory@evil.example>"))
        assert (await alice.submit(foreign))["notCreated"]["s"]["type"] == "forbiddenFrom"
        # An address of alice's, but not this Identity's, in From.
        other = await alice.save_draft(draft("other", sender="sales@example.org"))
        assert (await alice.submit(other))["notCreated"]["s"]["type"] == "forbiddenFrom"
        two = await alice.save_draft(draft("two", sender="alice@example.org, sales@example.org"))
        err = (await alice.submit(two))["notCreated"]["s"]
        assert err["type"] == "invalidEmail" and err["properties"] == ["from"]

        ok = await alice.save_draft(draft("ok"))
        envelope = {
            "mailFrom": {"email": "bob@example.org", "parameters": None},
            "rcptTo": [{"email": "bob@example.org", "parameters": None}],
        }
        err = (await alice.submit(ok, envelope=envelope))["notCreated"]["s"]
        assert err["type"] == "forbiddenMailFrom"
        envelope["mailFrom"]["email"] = "alice@example.org"
        envelope["rcptTo"] = []
        assert (await alice.submit(ok, envelope=envelope))["notCreated"]["s"]["type"] == (
            "noRecipients"
        )
        envelope["rcptTo"] = [{"email": "not an address", "parameters": None}]
        err = (await alice.submit(ok, envelope=envelope))["notCreated"]["s"]
        assert err == {
            "type": "invalidRecipients",
            "invalidRecipients": ["not an address"],
            "description": "invalid addresses",
        }
        envelope["rcptTo"] = [{"email": "carol@remote.example", "parameters": None}]
        err = (await alice.submit(ok, envelope=envelope))["notCreated"]["s"]
        assert err["type"] == "invalidRecipients"
        assert err["invalidRecipients"] == ["carol@remote.example"]
        envelope["rcptTo"] = [{"email": "bob@example.org", "parameters": {"NOTIFY": "NEVER"}}]
        err = (await alice.submit(ok, envelope=envelope))["notCreated"]["s"]
        assert err["type"] == "invalidProperties" and err["properties"] == ["envelope"]

        err = (await alice.submit("xnope"))["notCreated"]["s"]
        assert err["type"] == "invalidProperties" and err["properties"] == ["emailId"]
        err = (
            await alice.call(
                "EmailSubmission/set", create={"s": {"identityId": "xnope", "emailId": ok}}
            )
        )["notCreated"]["s"]
        assert err["properties"] == ["identityId"]
        err = (await alice.submit(ok, undoStatus="sideways"))["notCreated"]["s"]
        assert err["properties"] == ["undoStatus"]
        await alice.http.aclose()


async def test_local_only_destroy_email_query_and_changes(jmap_config):
    """Without a relay local mail still goes; onSuccessDestroyEmail; EmailSubmission/query
    filters and sorts (sentAt is accepted for sendAt); /changes."""
    async with running_server(jmap_config) as server:
        alice = await connect(server, "alice")
        bob = await connect(server, "bob")
        state = (await alice.call("EmailSubmission/get", ids=[]))["state"]
        first = await alice.save_draft(draft("first"))
        second = await alice.save_draft(draft("second", to="sales-team@example.org"))
        responses = await alice.request(
            [
                [
                    "EmailSubmission/set",
                    {
                        "create": {
                            "a": {"identityId": alice.identity, "emailId": first},
                            "b": {"identityId": alice.identity, "emailId": second},
                        },
                        "onSuccessDestroyEmail": ["#a"],
                    },
                    "0",
                ]
            ]
        )
        assert [r[0] for r in responses] == ["EmailSubmission/set", "Email/set"]
        assert responses[1][1]["destroyed"] == [first]
        ids = {k: v["id"] for k, v in responses[0][1]["created"].items()}
        inbox = await bob.call("Email/query", filter={"inMailbox": bob.roles["inbox"]})
        assert len(inbox["ids"]) == 1

        # The group's address lands in the group account alice can see.
        session = (await alice.http.get("/jmap/session")).json()
        group = next(a for a, v in session["accounts"].items() if not v["isPersonal"])
        boxes = (await api(alice.http, [["Mailbox/get", {"accountId": group}, "m"]], using=USING))[
            "methodResponses"
        ][0][1]["list"]
        group_inbox = next(m for m in boxes if m["role"] == "inbox")
        assert group_inbox["totalEmails"] == 1

        query = await alice.call(
            "EmailSubmission/query",
            filter={"emailIds": [second], "undoStatus": "final"},
            sort=[{"property": "sentAt"}],
        )
        assert query["ids"] == [ids["b"]]
        # RFC 8621 §7.3 before/after are UTCDates in every RFC 3339 form (RFC 8620 §1.4).
        window = await alice.call(
            "EmailSubmission/query",
            filter={"after": "2000-01-01T00:00:00.000Z", "before": "2999-12-31T23:59:59.50Z"},
        )
        assert set(window["ids"]) == set(ids.values())
        later = {"after": "2999-01-01t00:00:00.10z"}
        assert (await alice.call("EmailSubmission/query", filter=later))["ids"] == []
        everything = await alice.call(
            "EmailSubmission/query", sort=[{"property": "emailId", "isAscending": False}]
        )
        assert set(everything["ids"]) == set(ids.values())
        changes = await alice.call("EmailSubmission/changes", sinceState=state)
        assert set(changes["created"]) == set(ids.values())
        destroyed = await alice.call("EmailSubmission/set", destroy=[ids["a"]])
        assert destroyed["destroyed"] == [ids["a"]]
        await alice.http.aclose()
        await bob.http.aclose()
