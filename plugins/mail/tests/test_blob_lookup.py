"""Blob/lookup (RFC 9404 §4.3) for mail's types: an Email references its message and every
part of it, a Thread and a Mailbox what their Emails reference (§4.3's own example), and
another account's blob looks like one nobody references."""

from __future__ import annotations

from typing import Any

from jmap_host_mail.testing import MailClient

from jmap_host.testing import running_server

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
BLOB = "urn:ietf:params:jmap:blob"

MESSAGE = (
    b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: with a part\r\n"
    b"Message-ID: <lookup@x>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
    b'filename="x.bin"\r\n\r\nBINARYDATA\r\n--b--\r\n'
)


class Mail(MailClient):
    errors_as_results = True

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        body = {
            "using": [CORE, MAIL, BLOB],
            "methodCalls": [[name, {"accountId": self.account, **args}, "c"]],
        }
        reply = await self.http.post("/jmap/api", json=body)
        answered, result, _ = reply.json()["methodResponses"][0]
        return result if answered == name else {"error": result}


async def test_lookup_of_emails_threads_and_mailboxes(jmap_config):
    async with running_server(jmap_config) as server:
        async with server.client("alice") as http:
            session = (await http.get("/jmap/session")).json()
            alice = Mail(http, session["primaryAccounts"][MAIL])
            caps = session["accounts"][alice.account]["accountCapabilities"][BLOB]
            assert {"Email", "Thread", "Mailbox"} <= set(caps["supportedTypeNames"])
            boxes = (await alice.call("Mailbox/get", ids=None))["list"]
            inbox = next(m["id"] for m in boxes if m["role"] == "inbox")
            archive = next(m["id"] for m in boxes if m["role"] == "archive")
            blob = await alice.upload(MESSAGE)
            created = await alice.call(
                "Email/import",
                emails={"e": {"blobId": blob, "mailboxIds": {inbox: True, archive: True}}},
            )
            email = created["created"]["e"]
            got = await alice.call("Email/get", ids=[email["id"]], properties=["attachments"])
            part = got["list"][0]["attachments"][0]["blobId"]
            unused = (
                await alice.call("Blob/upload", create={"u": {"data": [{"data:asText": "x"}]}})
            )["created"]["u"]["id"]
            found = await alice.call(
                "Blob/lookup", typeNames=["Mailbox", "Thread", "Email"], ids=[blob, part, unused]
            )
            by_id = {b["id"]: b["matchedIds"] for b in found["list"]}
            for blob_id in (blob, part):
                assert by_id[blob_id] == {
                    "Mailbox": sorted([inbox, archive]),
                    "Thread": [email["threadId"]],
                    "Email": [email["id"]],
                }
            assert by_id[unused] == {"Mailbox": [], "Thread": [], "Email": []}
        async with server.client("bob") as http:
            session = (await http.get("/jmap/session")).json()
            bob = Mail(http, session["primaryAccounts"][MAIL])
            theirs = await bob.call("Blob/lookup", typeNames=["Email"], ids=[blob])
            assert theirs["list"] == [{"id": blob, "matchedIds": {"Email": []}}]
