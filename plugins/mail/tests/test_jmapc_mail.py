"""A real third-party client, jmapc (PyPI), against the mail plugin over TLS: Mailbox/get
(RFC 8621 §2.1), Email/import (§4.8, jmapc has no class for it: CustomMethod), Email/query
(§4.4), Email/get (§4.2) and Email/set keywords (§4.6), through jmapc's own models.

jmapc connects to https://{host}, so the listener uses a trustme certificate that requests
(under jmapc) trusts through REQUESTS_CA_BUNDLE, as tests/test_jmapc_tls.py does; jmapc is
synchronous and runs in trio.to_thread."""

from __future__ import annotations

import trio
from jmapc import Client, Comparator, EmailQueryFilterCondition
from jmapc.methods import (
    CustomMethod,
    EmailGet,
    EmailQuery,
    EmailSet,
    MailboxGet,
)

from jmap_host.testing import PASSWORDS, running_server, write_tls_config

MAIL = "urn:ietf:params:jmap:mail"
RAW = (
    b"From: Bob <bob@example.org>\r\nTo: Alice <alice@example.org>\r\n"
    b"Subject: Hello from jmapc\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\n"
    b"Message-ID: <jmapc-1@example.org>\r\n\r\nA body to search for: pineapple.\r\n"
)


def tls_config(tmp_path):
    return write_tls_config(tmp_path)


async def test_jmapc_mailboxes_import_query_get_and_keywords(tmp_path, monkeypatch):
    config, ca_file = tls_config(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    eml = tmp_path / "hello.eml"
    eml.write_bytes(RAW)
    async with running_server(config) as server:
        hostport = server.url.removeprefix("https://")

        # CustomMethod needs its method name and capability set on the instance.
        def call_custom(client, name, data):
            method = CustomMethod(data=data)
            method.jmap_method = name
            method.using = {MAIL}
            return client.request(method)

        def scenario():
            client = Client.create_with_password(hostport, "alice", PASSWORDS["alice"])
            account = client.account_id
            boxes = client.request(MailboxGet(ids=None))
            inbox = next(m for m in boxes.data if m.role == "inbox")
            blob = client.upload_blob(eml)
            imported = call_custom(
                client,
                "Email/import",
                {
                    "accountId": account,
                    "emails": {
                        "m": {
                            "blobId": blob.id,
                            "mailboxIds": {inbox.id: True},
                            "receivedAt": "2026-11-24T09:00:00Z",
                        }
                    },
                },
            )
            email_id = imported.data["created"]["m"]["id"]
            query = client.request(
                EmailQuery(
                    filter=EmailQueryFilterCondition(in_mailbox=inbox.id, text="pineapple"),
                    sort=[Comparator(property="receivedAt", is_ascending=False)],
                )
            )
            got = client.request(
                EmailGet(
                    ids=[email_id],
                    properties=["subject", "from", "keywords", "mailboxIds", "receivedAt"],
                )
            )
            flagged = client.request(
                EmailSet(update={email_id: {"keywords/$flagged": True, "keywords/$seen": True}})
            )
            again = client.request(EmailGet(ids=[email_id], properties=["keywords"]))
            recounted = client.request(MailboxGet(ids=[inbox.id]))
            return {
                "boxes": boxes,
                "inbox": inbox,
                "blob": blob,
                "imported": imported,
                "email_id": email_id,
                "query": query,
                "got": got,
                "flagged": flagged,
                "again": again,
                "recounted": recounted,
            }

        r = await trio.to_thread.run_sync(scenario)

    roles = {m.role for m in r["boxes"].data}
    assert {"inbox", "drafts", "sent", "archive", "junk", "trash"} <= roles
    assert r["inbox"].name == "Inbox" and r["inbox"].total_emails == 0
    assert r["blob"].size == len(RAW)
    created = r["imported"].data["created"]["m"]
    assert set(created) == {"id", "blobId", "threadId", "size"} and created["size"] == len(RAW)
    assert r["query"].ids == [r["email_id"]]
    [email] = r["got"].data
    assert email.subject == "Hello from jmapc"
    assert email.mail_from[0].email == "bob@example.org"
    assert email.mailbox_ids == {r["inbox"].id: True}
    assert email.received_at.year == 2026
    assert r["flagged"].updated == {r["email_id"]: None}
    assert r["again"].data[0].keywords == {"$flagged": True, "$seen": True}
    [recounted] = r["recounted"].data
    assert recounted.total_emails == 1 and recounted.unread_emails == 0
