"""LMTP delivery (RFC 2033; issue 4 §2) over real sockets: the dialogue, per-recipient replies
after DATA (§4.2), 550 5.1.1 for unknown recipients, 552 5.2.2 over quota, pipelining
(RFC 2920), dot-unstuffing (RFC 5321 §4.5.2), a Unix socket listener, and the delivered
message seen through Email/query and an EventSource-less poll of Email/changes over HTTP."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import trio
from jmap_host_mail.testing import MailClient

from jmap_host.testing import BASE_CONFIG, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
USING = [CORE, MAIL]

LMTP_LISTENER = """
[server.listener."lmtp"]
bind = ["{bind}"]
protocol = "lmtp"
"""
# bob gets a tiny quota: 100 octets.
QUOTA_BASE = BASE_CONFIG.replace('name = "bob"\n', 'name = "bob"\nquota = 100\n')


def message(subject: str = "Hello", body: str = "Hi Alice") -> bytes:
    return (
        "From: Carol <carol@example.net>\r\nTo: alice@example.org\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@example.net>\r\n"
        f"Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\n{body}\r\n"
    ).encode()


class LMTPClient:
    def __init__(self, stream: Any):
        self.stream = stream
        self.buffer = b""

    async def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            with trio.fail_after(10):
                data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: its code and its last line's text."""
        while True:
            line = (await self.line()).decode()
            if line[3:4] != "-":
                return int(line[:3]), line[4:]

    async def send(self, data: bytes | str) -> None:
        await self.stream.send_all(data.encode() if isinstance(data, str) else data)

    async def command(self, text: str) -> tuple[int, str]:
        await self.send(text + "\r\n")
        return await self.reply()

    async def data(self, raw: bytes) -> None:
        stuffed = b"".join(
            b"." + line if line.startswith(b".") else line for line in raw.splitlines(True)
        )
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        await self.send(stuffed + b".\r\n")


async def connect(server: Any) -> LMTPClient:
    url = server.urls["lmtp"][0]
    if url.startswith("lmtp:unix:"):
        stream = await trio.open_unix_socket(url[len("lmtp:unix:") :])
    else:
        address, port = url.removeprefix("lmtp://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(address, int(port))
    client = LMTPClient(stream)
    code, _ = await client.reply()
    assert code == 220
    return client


class Mail(MailClient):
    def __init__(self, http: Any, account: str):
        self.http, self.account = http, account

    async def inbox(self) -> str:
        boxes = (await self.call("Mailbox/get", ids=None))["list"]
        return next(m["id"] for m in boxes if m["role"] == "inbox")


async def accounts(http: Any) -> dict[str, str]:
    """Account ids by name (the first address) in the session."""
    session = (await http.get("/jmap/session")).json()
    return {a["name"]: i for i, a in session["accounts"].items()}


@pytest.fixture
def lmtp_config(tmp_path):
    return write_config(tmp_path, LMTP_LISTENER.format(bind="127.0.0.1:0"), base=QUOTA_BASE)


async def test_delivery_per_recipient_replies_query_and_changes(lmtp_config):
    """§4.2: one reply per accepted RCPT after DATA; the message then shows up through
    Email/query in the Inbox and as created in Email/changes (a poll, no push stream)."""
    async with running_server(lmtp_config) as server, server.client("alice") as http:
        ids = await accounts(http)
        alice = Mail(http, ids["alice@example.org"])
        group = Mail(http, ids["sales-team@example.org"])
        since = (await alice.call("Email/get", ids=[]))["state"]

        lmtp = await connect(server)
        code, _ = await lmtp.command("LHLO mta.example.org")
        assert code == 250
        assert (await lmtp.command("MAIL FROM:<carol@example.net> SIZE=200"))[0] == 250
        assert await lmtp.command("RCPT TO:<alice@example.org>") == (250, "2.1.5 recipient OK")
        # An alias of alice's: the same account, one copy, its own reply.
        assert (await lmtp.command("RCPT TO:<Sales@Example.org>"))[0] == 250
        code, text = await lmtp.command("RCPT TO:<nobody@example.org>")
        assert (code, text.split()[0]) == (550, "5.1.1")
        assert (await lmtp.command("RCPT TO:<sales-team@example.org>"))[0] == 250
        assert (await lmtp.command("DATA"))[0] == 354
        await lmtp.data(message("Quarterly numbers"))
        replies = [await lmtp.reply() for _ in range(3)]
        assert [c for c, _ in replies] == [250, 250, 250]
        assert all(t.startswith("2.0.0 ") for _, t in replies)
        assert replies[0][1] == replies[1][1]  # the same Email for both of alice's addresses
        assert (await lmtp.command("QUIT"))[0] == 221

        inbox = await alice.inbox()
        found = await alice.call("Email/query", filter={"inMailbox": inbox})
        assert len(found["ids"]) == 1
        email_id = found["ids"][0]
        assert email_id in replies[0][1]
        got = await alice.call(
            "Email/get",
            ids=[email_id],
            properties=["subject", "keywords", "header:Return-Path", "header:Received"],
        )
        email = got["list"][0]
        assert email["subject"] == "Quarterly numbers"
        assert email["keywords"] == {}
        assert email["header:Return-Path"].strip() == "<carol@example.net>"
        assert "with LMTP" in email["header:Received"]
        assert "for <alice@example.org>" in email["header:Received"]

        changes = await alice.call("Email/changes", sinceState=since)
        assert changes["created"] == [email_id]
        assert changes["updated"] == [] and changes["destroyed"] == []

        # The group address delivered into the group's shared account.
        group_inbox = await group.inbox()
        assert len((await group.call("Email/query", filter={"inMailbox": group_inbox}))["ids"]) == 1
        counts = await alice.call("Mailbox/get", ids=[inbox], properties=["unreadEmails"])
        assert counts["list"][0]["unreadEmails"] == 1


async def test_never_logged_in_account_is_provisioned(lmtp_config):
    """Mail for a user who never logged in lands in an Inbox made for the occasion."""
    async with running_server(lmtp_config) as server:
        lmtp = await connect(server)
        await lmtp.command("LHLO mta")
        await lmtp.command("MAIL FROM:<>")
        assert (await lmtp.command("RCPT TO:<alice@example.org>"))[0] == 250
        await lmtp.command("DATA")
        await lmtp.data(message("First mail ever"))
        assert (await lmtp.reply())[0] == 250
        async with server.client("alice") as http:
            alice = Mail(http, (await accounts(http))["alice@example.org"])
            boxes = (await alice.call("Mailbox/get", ids=None))["list"]
            roles = sorted(m["role"] for m in boxes)
            assert roles == ["archive", "drafts", "inbox", "junk", "sent", "trash"]
            inbox = next(m for m in boxes if m["role"] == "inbox")
            query = await alice.call("Email/query", filter={"inMailbox": inbox["id"]})
            got = await alice.call("Email/get", ids=query["ids"], properties=["header:Return-Path"])
            assert got["list"][0]["header:Return-Path"].strip() == "<>"


async def test_pipelining_and_dot_unstuffing(lmtp_config):
    """RFC 2920: the whole transaction in one write; replies come back in order.  RFC 5321
    §4.5.2: a leading dot is doubled on the wire and removed on receipt."""
    body = "line one\r\n.leading dot\r\n..two dots\r\n.\r\nafter a lone dot"
    async with running_server(lmtp_config) as server, server.client("alice") as http:
        lmtp = await connect(server)
        await lmtp.send(
            "LHLO mta\r\nMAIL FROM:<carol@example.net>\r\nRCPT TO:<alice@example.org>\r\n"
            "RCPT TO:<ghost@example.org>\r\nDATA\r\n"
        )
        assert (await lmtp.reply())[0] == 250  # LHLO
        assert (await lmtp.reply())[0] == 250  # MAIL
        assert (await lmtp.reply())[0] == 250  # RCPT alice
        assert (await lmtp.reply())[0] == 550  # RCPT ghost
        assert (await lmtp.reply())[0] == 354
        raw = message("Dots", body)
        stuffed = b"".join(
            b"." + line if line.startswith(b".") else line for line in raw.splitlines(True)
        )
        await lmtp.send(stuffed + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        code, text = await lmtp.reply()
        assert code == 250, text
        assert [(await lmtp.reply())[0] for _ in range(3)] == [250, 250, 221]

        alice = Mail(http, (await accounts(http))["alice@example.org"])
        email_id = text.split()[-1]
        got = await alice.call("Email/get", ids=[email_id], properties=["blobId", "size"])
        download = await http.get(
            f"/jmap/download/{alice.account}/{got['list'][0]['blobId']}/m.eml"
        )
        assert download.content.endswith(raw)  # after the trace headers, byte for byte
        assert got["list"][0]["size"] == len(download.content)


async def test_quota(lmtp_config):
    """Over quota: 552 5.2.2, at RCPT when the declared SIZE cannot fit, else after DATA."""
    async with running_server(lmtp_config) as server:
        lmtp = await connect(server)
        await lmtp.command("LHLO mta")
        await lmtp.command("MAIL FROM:<carol@example.net> SIZE=5000")
        code, text = await lmtp.command("RCPT TO:<bob@example.org>")
        assert (code, text.split()[0]) == (552, "5.2.2")
        assert (await lmtp.command("RSET"))[0] == 250

        await lmtp.command("MAIL FROM:<carol@example.net>")
        assert (await lmtp.command("RCPT TO:<bob@example.org>"))[0] == 250
        assert (await lmtp.command("RCPT TO:<alice@example.org>"))[0] == 250
        await lmtp.command("DATA")
        await lmtp.data(message("Too big for bob"))
        bob_reply, alice_reply = await lmtp.reply(), await lmtp.reply()
        assert (bob_reply[0], bob_reply[1].split()[0]) == (552, "5.2.2")
        assert alice_reply[0] == 250
        assert (await lmtp.command("QUIT"))[0] == 221


async def test_protocol_errors_and_size_limit(tmp_path):
    extra = LMTP_LISTENER.format(bind="127.0.0.1:0") + "\n[jmap.protocol.upload]\nmax-size = 2000\n"
    config = write_config(tmp_path, extra)
    async with running_server(config) as server:
        lmtp = await connect(server)
        assert (await lmtp.command("MAIL FROM:<a@example.net>"))[0] == 503  # LHLO first
        assert (await lmtp.command("EHLO mta"))[0] == 500  # this is LMTP
        assert (await lmtp.command("LHLO mta"))[0] == 250
        assert (await lmtp.command("RCPT TO:<alice@example.org>"))[0] == 503  # MAIL first
        assert (await lmtp.command("DATA"))[0] == 503
        assert (await lmtp.command("BOGUS"))[0] == 500
        assert (await lmtp.command("MAIL FROM:<a@example.net> SIZE=999999"))[0] == 552
        assert (await lmtp.command("MAIL FROM:<a@example.net>"))[0] == 250
        assert (await lmtp.command("MAIL FROM:<a@example.net>"))[0] == 503  # nested
        assert (await lmtp.command("RCPT TO:<ghost@example.org>"))[0] == 550
        assert (await lmtp.command("DATA"))[0] == 503  # RFC 2033 §4.2: no valid recipients
        assert (await lmtp.command("RCPT TO:<alice@example.org>"))[0] == 250
        assert (await lmtp.command("RCPT TO:<alice+lists@example.org>"))[0] == 250  # RFC 5233
        assert (await lmtp.command("DATA"))[0] == 354
        await lmtp.data(message("Big", "x" * 70 + "\r\n") * 40)
        replies = [await lmtp.reply(), await lmtp.reply()]
        assert [(c, t.split()[0]) for c, t in replies] == [(552, "5.3.4")] * 2
        # The session goes on after a refused message.
        assert (await lmtp.command("NOOP"))[0] == 250
        assert (await lmtp.command("QUIT"))[0] == 221


async def test_unix_socket_and_vacation_hook(tmp_path, monkeypatch):
    """``bind = ["unix:/path"]``; after delivery, vacation.auto_reply (if the module exists)
    gets the arguments it asks for."""
    import jmap_host_mail

    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("jmap_host_mail.vacation")

    async def auto_reply(host: Any, account: Any, raw: bytes, envelope_from: Any, recipient: str):
        calls.append({"account": account.id, "from": envelope_from, "rcpt": recipient, "raw": raw})

    fake.auto_reply = auto_reply  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "jmap_host_mail.vacation", fake)
    monkeypatch.setattr(jmap_host_mail, "vacation", fake, raising=False)

    socket_path = tmp_path / "lmtp.sock"
    config = write_config(tmp_path, LMTP_LISTENER.format(bind=f"unix:{socket_path}"))
    async with running_server(config) as server:
        assert server.urls["lmtp"] == [f"lmtp:unix:{socket_path}"]
        lmtp = await connect(server)
        await lmtp.command("LHLO mta")
        await lmtp.command("MAIL FROM:<carol@example.net>")
        await lmtp.command("RCPT TO:<alice@example.org>")
        await lmtp.command("DATA")
        await lmtp.data(message("Out of office?"))
        assert (await lmtp.reply())[0] == 250
        await lmtp.command("QUIT")
        with trio.fail_after(5):
            while not calls:
                await trio.sleep(0.01)
    assert calls[0]["from"] == "carol@example.net"
    assert calls[0]["rcpt"] == "alice@example.org"
    assert b"Subject: Out of office?" in calls[0]["raw"]
