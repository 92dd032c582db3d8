"""The awkward corpus at the wire: every message imports through Email/import without a
single failure (RFC 8621 §4.8) and round-trips through Email/get with every property and
body value (§4.2); its blob downloads byte for byte; Email/parse agrees (§4.9)."""

from __future__ import annotations

import json
from pathlib import Path

from jmap_host.testing import api, running_server

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.eml"))
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
ALL_PROPERTIES = [
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
    "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
    "sentAt", "hasAttachment", "preview", "headers", "bodyStructure", "bodyValues", "textBody",
    "htmlBody", "attachments", "header:Subject:asText", "header:From:asAddresses:all",
    "header:Date:asDate", "header:List-Id:asRaw",
]  # fmt: skip


async def test_every_corpus_message_imports_and_round_trips(jmap_config):
    assert len(CORPUS) >= 25
    async with running_server(jmap_config) as server, server.client("alice") as client:
        session = (await client.get("/jmap/session")).json()
        account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        inbox = (
            await api(
                client,
                [["Mailbox/query", {"accountId": account, "filter": {"role": "inbox"}}, "q"]],
                using=USING,
            )
        )["methodResponses"][0][1]["ids"][0]
        for path in CORPUS:
            raw = path.read_bytes()
            upload = await client.post(f"/jmap/upload/{account}/", content=raw)
            assert upload.status_code == 201, path.name
            blob = upload.json()["blobId"]
            result = await api(
                client,
                [
                    [
                        "Email/import",
                        {
                            "accountId": account,
                            "emails": {"m": {"blobId": blob, "mailboxIds": {inbox: True}}},
                        },
                        "i",
                    ],
                    [
                        "Email/get",
                        {
                            "accountId": account,
                            "ids": ["#m"],
                            "properties": ALL_PROPERTIES,
                            "fetchAllBodyValues": True,
                        },
                        "g",
                    ],
                    [
                        "Email/parse",
                        {
                            "accountId": account,
                            "blobIds": [blob],
                            "properties": ["subject", "size", "preview"],
                        },
                        "p",
                    ],
                ],
                using=USING,
            )
            imported, got, parsed = (r[1] for r in result["methodResponses"])
            assert imported["notCreated"] is None, (path.name, imported)
            assert "list" in got, (path.name, got)
            email = got["list"][0]
            assert set(ALL_PROPERTIES) <= set(email), path.name
            assert email["size"] == len(raw)
            assert json.loads(json.dumps(email)) == email  # plain JSON all the way down
            for part in email["textBody"] + email["htmlBody"] + email["attachments"]:
                if part.get("blobId"):
                    part_download = await client.get(
                        f"/jmap/download/{account}/{part['blobId']}/p?type=application/x-test"
                    )
                    assert part_download.status_code == 200, path.name
            download = await client.get(
                f"/jmap/download/{account}/{email['blobId']}/m.eml?type=message/rfc822"
            )
            assert download.content == raw, path.name
            if blob in (parsed.get("parsed") or {}):
                assert parsed["parsed"][blob]["subject"] == email["subject"], path.name
            else:
                assert blob in parsed["notParsable"], path.name
        query = await api(
            client,
            [
                [
                    "Email/query",
                    {"accountId": account, "filter": {"inMailbox": inbox}, "calculateTotal": True},
                    "q",
                ]
            ],
            using=USING,
        )
        assert query["methodResponses"][0][1]["total"] == len(CORPUS)
