"""Blob management (RFC 9404) at the wire: the capability (§3.1), Blob/upload (§4.1) from
text, base64 and ranges of other blobs, Blob/get (§4.2) with ranges, encodings and
digests, Blob/lookup (§4.3) through the host's lookup of a type with a BlobId property
(the example plugin's Note), and the access rules of RFC 8620 §6 for all three."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from jmap_host.testing import api, running_server

CORE = "urn:ietf:params:jmap:core"
BLOB = "urn:ietf:params:jmap:blob"
EXAMPLE = "https://jmap-host.org/ext/example"
USING = [CORE, BLOB, EXAMPLE]
FOX = "The quick brown fox jumped over the lazy dog."


class Client:
    def __init__(self, http: Any, account: str):
        self.http, self.account = http, account

    async def calls(self, *calls: list[Any], using: list[str] = USING) -> list[list[Any]]:
        for call in calls:
            call[1].setdefault("accountId", self.account)
        return (await api(self.http, list(calls), using=using))["methodResponses"]

    async def one(self, name: str, **args: Any) -> dict[str, Any]:
        [[answered, result, _]] = await self.calls([name, args, "c"])
        return result if answered == name else {"error": result}


@pytest.fixture
async def server(jmap_config):
    async with running_server(jmap_config) as running:
        yield running


@pytest.fixture
async def alice(server):
    async with server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        yield Client(http, session["primaryAccounts"][CORE])


async def test_capability_in_the_session_and_every_account(alice):
    """§3.1: an empty object in the session; the account object has the limits, the
    lookup types and the digests."""
    session = (await alice.http.get("/jmap/session")).json()
    assert session["capabilities"][BLOB] == {}
    limits = session["capabilities"][CORE]
    for account in session["accounts"].values():
        caps = account["accountCapabilities"][BLOB]
        assert caps["maxSizeBlobSet"] == limits["maxSizeUpload"]
        assert caps["maxDataSources"] >= 64
        assert "Note" in caps["supportedTypeNames"]  # it has a BlobId property
        assert caps["supportedDigestAlgorithms"][:1] == ["sha-256"]
        assert "sha" in caps["supportedDigestAlgorithms"]


async def test_upload_concatenates_sources_and_get_reads_them(alice):
    """§4.1.2's complex example: text, ranges of a blob made earlier in the request (by
    creation id) and base64; the creation ids join createdIds; §4.2 reads it back."""
    responses = await alice.calls(
        ["Blob/upload", {"create": {"b4": {"data": [{"data:asText": FOX}]}}}, "S4"],
        [
            "Blob/upload",
            {
                "create": {
                    "cat": {
                        "data": [
                            {"data:asText": "How"},
                            {"blobId": "#b4", "length": 7, "offset": 3},
                            {"data:asText": "was t"},
                            {"blobId": "#b4", "length": 1, "offset": 1},
                            {"data:asBase64": "YXQ/"},
                        ]
                    }
                }
            },
            "CAT",
        ],
        ["Blob/get", {"properties": ["data:asText", "size"], "ids": ["#cat"]}, "G4"],
    )
    first = responses[0][1]["created"]["b4"]
    assert first["size"] == 45 and first["type"] == "application/octet-stream"
    assert first["id"] == "G" + hashlib.sha256(FOX.encode()).hexdigest()
    cat = responses[1][1]["created"]["cat"]
    assert cat["size"] == 19
    assert responses[2] == [
        "Blob/get",
        {
            "accountId": alice.account,
            "list": [{"id": cat["id"], "data:asText": "How quick was that?", "size": 19}],
            "notFound": [],
        },
        "G4",
    ]
    # The new blob is an upload like any other (RFC 8620 §6.2: it downloads).
    download = await alice.http.get(f"/jmap/download/{alice.account}/{cat['id']}/cat.txt")
    assert download.content == b"How quick was that?"


async def test_get_ranges_encodings_and_digests(alice):
    """§4.2.1 and §4.2.2: data defaults to text or base64; a range past the end is
    isTruncated; invalid UTF-8 is isEncodingProblem; digests are of the selected range."""
    raw = b"The quick brown fox jumped over the \x81\x81 dog."
    made = await alice.one(
        "Blob/upload",
        create={
            "b1": {"data": [{"data:asBase64": base64.b64encode(raw).decode()}]},
            "b2": {"data": [{"data:asText": "hello world"}], "type": "text/plain"},
            "fox": {"data": [{"data:asText": FOX}]},
        },
    )
    b1, b2, fox = (made["created"][k]["id"] for k in ("b1", "b2", "fox"))
    assert made["created"]["b2"]["type"] == "text/plain"
    got = await alice.one("Blob/get", ids=[b1, b2, "not-a-blob"])
    assert got["notFound"] == ["not-a-blob"]
    one, two = got["list"]
    assert one == {
        "id": b1,
        "data:asBase64": base64.b64encode(raw).decode(),
        "isEncodingProblem": True,
        "size": 43,
    }
    assert two == {"id": b2, "data:asText": "hello world", "size": 11}
    text_only = await alice.one("Blob/get", ids=[b1], properties=["data:asText", "size"])
    assert text_only["list"] == [
        {"id": b1, "data:asText": None, "isEncodingProblem": True, "size": 43}
    ]
    base64_only = await alice.one("Blob/get", ids=[b1], properties=["data:asBase64"])
    assert "isEncodingProblem" not in base64_only["list"][0]
    head = await alice.one("Blob/get", ids=[b1, b2], offset=0, length=5)
    assert [b["data:asText"] for b in head["list"]] == ["The q", "hello"]
    past = await alice.one("Blob/get", ids=[b1, b2], offset=20, length=100)
    assert all(b["isTruncated"] for b in past["list"])
    assert past["list"][1]["data:asText"] == ""  # offset past the end: nothing, truncated
    digests = await alice.one(
        "Blob/get",
        ids=[fox],
        properties=["data:asText", "digest:sha", "digest:sha-256", "size"],
        offset=4,
        length=9,
    )
    assert digests["list"] == [
        {
            "id": fox,
            "data:asText": "quick bro",
            "digest:sha": "QiRAPtfyX8K6tm1iOAtZ87Xj3Ww=",
            "digest:sha-256": "gdg9INW7lwHK6OQ9u0dwDz2ZY/gubi0En0xlFpKt0OA=",
            "size": 45,
        }
    ]
    bad = await alice.one("Blob/get", ids=[fox], properties=["digest:md5"])
    assert bad["error"]["type"] == "invalidArguments"
    assert (await alice.one("Blob/get", ids=None))["error"]["type"] == "invalidArguments"


async def test_upload_refuses_what_it_cannot_make_exactly(alice):
    """§4.1: invalid base64, a range outside the blob, an unknown blob, a source that is
    not exactly one kind: notCreated, never a guess; past maxSizeBlobSet: tooLarge."""
    fox = (await alice.one("Blob/upload", create={"f": {"data": [{"data:asText": FOX}]}}))[
        "created"
    ]["f"]["id"]
    cases = {
        "base64": {"data": [{"data:asBase64": "not base64!"}]},
        "range": {"data": [{"blobId": fox, "offset": 40, "length": 10}]},
        "offset": {"data": [{"blobId": fox, "offset": 46}]},
        "missing": {"data": [{"blobId": "G" + "0" * 64}]},
        "two": {"data": [{"data:asText": "a", "data:asBase64": "YQ=="}]},
        "extra": {"data": [{"data:asText": "a", "offset": 1}]},
        "unknown": {"data": [], "colour": "blue"},
        "type": {"data": [], "type": "not a type"},
        "many": {"data": [{"data:asText": "x"}] * 300},
    }
    result = await alice.one("Blob/upload", create=cases)
    assert result["created"] is None
    for key in cases:
        expected = "tooLarge" if key == "many" else "invalidProperties"
        assert result["notCreated"][key]["type"] == expected, (key, result["notCreated"][key])
    empty = await alice.one("Blob/upload", create={"e": {"data": []}})
    assert empty["created"]["e"]["size"] == 0


async def test_access_rules_are_the_upload_endpoints(server, alice):
    """RFC 8620 §6 through RFC 9404 §5: bob cannot read alice's unreferenced blob, use it
    as a data source, or look it up, and each answers as for a blob that does not exist."""
    fox = (await alice.one("Blob/upload", create={"f": {"data": [{"data:asText": FOX}]}}))[
        "created"
    ]["f"]["id"]
    async with server.client("bob") as http:
        session = (await http.get("/jmap/session")).json()
        bob = Client(http, session["primaryAccounts"][CORE])
        assert (await bob.one("Blob/get", ids=[fox]))["notFound"] == [fox]
        stolen = await bob.one("Blob/upload", create={"x": {"data": [{"blobId": fox}]}})
        missing = await bob.one("Blob/upload", create={"x": {"data": [{"blobId": "G" + "1" * 64}]}})
        assert stolen["notCreated"]["x"] == missing["notCreated"]["x"]
        found = await bob.one("Blob/lookup", typeNames=["Note"], ids=[fox])
        assert found["list"] == [{"id": fox, "matchedIds": {"Note": []}}]
        # And alice's account is not bob's to write in.
        theirs = await bob.calls(["Blob/upload", {"accountId": alice.account, "create": {}}, "u"])
        assert theirs[0][1]["type"] == "accountNotFound"


async def test_lookup_finds_the_records_that_reference_a_blob(alice):
    """§4.3: Blob/lookup maps each blob to the ids of the records of each type that
    reference it; a blob nobody references, or that does not exist, maps to empty lists;
    a type without a lookup, or whose capability is not used, is unknownDataType."""
    made = await alice.one(
        "Blob/upload",
        create={
            "a": {"data": [{"data:asText": "attached"}]},
            "b": {"data": [{"data:asText": "lone"}]},
        },
    )
    attached, lone = made["created"]["a"]["id"], made["created"]["b"]["id"]
    notes = await alice.one(
        "Note/set",
        create={
            "n1": {"title": "one", "attachment": attached},
            "n2": {"title": "two", "attachment": attached},
        },
    )
    ids = sorted(n["id"] for n in notes["created"].values())
    ghost = "G" + "2" * 64
    found = await alice.one("Blob/lookup", typeNames=["Note"], ids=[attached, lone, ghost, "x"])
    assert found["notFound"] == ["x"]
    by_id = {b["id"]: b["matchedIds"] for b in found["list"]}
    assert sorted(by_id[attached]["Note"]) == ids
    assert by_id[lone] == {"Note": []} and by_id[ghost] == {"Note": []}
    unknown = await alice.one("Blob/lookup", typeNames=["Nope"], ids=[attached])
    assert unknown["error"]["type"] == "unknownDataType"
    [[_, not_used, _]] = await alice.calls(
        ["Blob/lookup", {"typeNames": ["Note"], "ids": [attached]}, "l"], using=[CORE, BLOB]
    )
    assert not_used["type"] == "unknownDataType"
    # Destroying a Note drops its reference.
    await alice.one("Note/set", destroy=[ids[0]])
    again = await alice.one("Blob/lookup", typeNames=["Note"], ids=[attached])
    assert again["list"][0]["matchedIds"]["Note"] == [ids[1]]
