"""Isolation of accounts (issue "Data layer"): every method and the upload and download URLs,
called with another account's ids, blob ids or state strings, answer exactly as for ids
that do not exist, so nobody learns that someone else's object or blob exists.  Each
comparison is of the whole response body, with the one id that differs masked.

Accounts: alice (member of sales), bob (member of eng, so he has two accounts of his own
to copy between), carol (member of sales).  The example plugin's Note type (``attachment``
is a BlobId) and Blob/copy are the methods under test.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from jmap_host.testing import api, basic, running_server, write_config

# The example plugin (the sample Note type) is opt-in.
EXAMPLE_ON = '[plugins]\nopt-in = ["example"]\n'

CORE = "urn:ietf:params:jmap:core"
USING = [CORE, "https://jmap-host.org/ext/example"]

EXTRA = """
[[directory."memory".principals]]
name = "carol"
secret = "carol-password"
email = ["carol@example.org"]
member-of = ["sales"]

[[directory."memory".principals]]
name = "eng"
class = "group"
email = ["eng@example.org"]
"""


def fake_note_id() -> str:
    return "x" + secrets.token_hex(8)  # the shape of a real id (objectstore.new_id)


def fake_blob_id() -> str:
    return "G" + secrets.token_hex(32)  # the shape of a real blob id


def masked(value: Any, *ids: str) -> str:
    text = json.dumps(value, sort_keys=True)
    for i in ids:
        text = text.replace(i, "<ID>")
    return text


def assert_same(theirs: Any, missing: Any, their_id: str, missing_id: str) -> None:
    """The answer for another account's id equals the answer for a nonexistent one."""
    assert masked(theirs, their_id) == masked(missing, missing_id), (theirs, missing)


class User:
    def __init__(self, server, name: str, password: str | None = None):
        self.http = server.client(headers=basic(name, password))
        self.name = name

    async def __aenter__(self) -> User:
        await self.http.__aenter__()
        session = (await self.http.get("/jmap/session")).json()
        self.own = session["primaryAccounts"][CORE]
        self.accounts = session["accounts"]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.__aexit__(*exc)

    def group(self) -> str:
        [group] = [a for a in self.accounts if a != self.own]
        return group

    async def call(self, name: str, **args: Any) -> list:
        """One method call; the [name, arguments] of its responses (call id dropped)."""
        response = await api(self.http, [[name, args, "c"]], using=USING)
        return [r[:2] for r in response["methodResponses"]]

    async def upload(self, account: str, data: bytes) -> str:
        response = await self.http.post(f"/jmap/upload/{account}/", content=data)
        assert response.status_code == 201, response.text
        return str(response.json()["blobId"])

    async def download(self, account: str, blob_id: str):
        return await self.http.get(f"/jmap/download/{account}/{blob_id}/f?type=text/plain")

    async def create_note(self, account: str, **note: Any) -> dict[str, Any]:
        [[name, result]] = await self.call(
            "Note/set", accountId=account, create={"n": {"title": "t", **note}}
        )
        assert name == "Note/set" and result["created"], result
        return dict(result)


@pytest.fixture
async def world(tmp_path):
    config = write_config(tmp_path, EXAMPLE_ON + EXTRA)
    text = config.read_text().replace(
        'email = ["bob@example.org"]', 'email = ["bob@example.org"]\nmember-of = ["eng"]'
    )
    config.write_text(text)
    async with running_server(config) as server:
        async with (
            User(server, "alice") as alice,
            User(server, "bob") as bob,
            User(server, "carol", "carol-password") as carol,
        ):
            yield server, alice, bob, carol


async def alice_data(alice: User) -> dict[str, str]:
    """Notes and blobs of alice's: one referenced blob, one unreferenced upload; several
    changes, so her state is a number bob's account never reached."""
    referenced = await alice.upload(alice.own, b"alice's attachment")
    unreferenced = await alice.upload(alice.own, b"alice's unreferenced upload")
    note = (await alice.create_note(alice.own, attachment=referenced))["created"]["n"]["id"]
    for i in range(4):
        await alice.create_note(alice.own, title=f"more {i}")
    [[_, got]] = await alice.call("Note/get", accountId=alice.own, ids=[])
    return {
        "note": note,
        "referenced": referenced,
        "unreferenced": unreferenced,
        "state": got["state"],
    }


async def test_methods_answer_for_another_accounts_ids_as_for_missing_ones(world):
    _server, alice, bob, _carol = world
    a = await alice_data(alice)
    mine = (await bob.create_note(bob.own))["created"]["n"]["id"]
    [[_, got]] = await bob.call("Note/get", accountId=bob.own, ids=[])
    bob_state = got["state"]
    assert int(a["state"]) > int(bob_state)  # alice's state names no state of bob's
    note, fake = a["note"], fake_note_id()

    async def both(name: str, build) -> list:
        """Call ``name`` with alice's id and with a nonexistent one; compare; return one."""
        theirs = await bob.call(name, **build(note))
        missing = await bob.call(name, **build(fake))
        assert_same(theirs, missing, note, fake)
        return theirs

    # /get: notFound.
    [[name, got]] = await both("Note/get", lambda i: {"accountId": bob.own, "ids": [i, mine]})
    assert name == "Note/get" and got["notFound"] == [note] and len(got["list"]) == 1
    # /set update and destroy: notFound, and no change.
    [[_, got]] = await both(
        "Note/set", lambda i: {"accountId": bob.own, "update": {i: {"title": "mine now"}}}
    )
    assert got["notUpdated"] == {note: {"type": "notFound"}}
    assert got["newState"] == bob_state
    [[_, got]] = await both("Note/set", lambda i: {"accountId": bob.own, "destroy": [i]})
    assert got["notDestroyed"] == {note: {"type": "notFound"}}
    # /copy between bob's own two accounts, of alice's record: notFound.
    [[_, got]] = await both(
        "Note/copy",
        lambda i: {"fromAccountId": bob.own, "accountId": bob.group(), "create": {"k": {"id": i}}},
    )
    assert got["notCreated"] == {"k": {"type": "notFound"}}
    # /query with alice's record as the anchor: anchorNotFound.
    [[name, got]] = await both("Note/query", lambda i: {"accountId": bob.own, "anchor": i})
    assert [name, got["type"]] == ["error", "anchorNotFound"]
    # /queryChanges with alice's record as upToId.
    [[name, got]] = await both(
        "Note/queryChanges",
        lambda i: {"accountId": bob.own, "sinceQueryState": "0", "upToId": i},
    )
    assert name == "Note/queryChanges" and got["added"] == [{"id": mine, "index": 0}]


async def test_other_accounts_and_their_states_answer_as_missing_ones(world):
    _server, alice, bob, _carol = world
    a = await alice_data(alice)
    await bob.create_note(bob.own)
    missing_account = "a" + secrets.token_hex(8)

    # Every method with alice's accountId: accountNotFound, as for a nonexistent account.
    for name, args in [
        ("Note/get", {"ids": [a["note"]]}),
        ("Note/set", {"update": {a["note"]: {"title": "x"}}}),
        ("Note/set", {"create": {"n": {"title": "x"}}}),
        ("Note/changes", {"sinceState": "0"}),
        ("Note/query", {}),
        ("Note/queryChanges", {"sinceQueryState": "0"}),
        ("Note/copy", {"fromAccountId": bob.own, "create": {"k": {"id": a["note"]}}}),
        ("Blob/copy", {"fromAccountId": bob.own, "blobIds": [a["referenced"]]}),
    ]:
        theirs = await bob.call(name, accountId=alice.own, **args)
        missing = await bob.call(name, accountId=missing_account, **args)
        assert_same(theirs, missing, alice.own, missing_account)
        assert theirs == [["error", {"type": "accountNotFound"}]], (name, theirs)

    # From alice's account: fromAccountNotFound, as from a nonexistent account.
    for name, args in [
        ("Note/copy", {"create": {"k": {"id": a["note"]}}}),
        ("Blob/copy", {"blobIds": [a["referenced"]]}),
    ]:
        theirs = await bob.call(name, accountId=bob.own, fromAccountId=alice.own, **args)
        missing = await bob.call(name, accountId=bob.own, fromAccountId=missing_account, **args)
        assert_same(theirs, missing, alice.own, missing_account)
        assert theirs == [["error", {"type": "fromAccountNotFound"}]], (name, theirs)

    # Alice's state strings in bob's account: as garbage (cannotCalculateChanges).
    for name, arg in [("Note/changes", "sinceState"), ("Note/queryChanges", "sinceQueryState")]:
        theirs = await bob.call(name, accountId=bob.own, **{arg: a["state"]})
        garbage = await bob.call(name, accountId=bob.own, **{arg: "999999"})
        assert_same(theirs, garbage, a["state"], "999999")
        assert theirs[0][1]["type"] == "cannotCalculateChanges"
    # ifInState with alice's state: stateMismatch, as with garbage.
    theirs = await bob.call(
        "Note/set", accountId=bob.own, ifInState=a["state"], create={"n": {"title": "x"}}
    )
    garbage = await bob.call(
        "Note/set", accountId=bob.own, ifInState="999999", create={"n": {"title": "x"}}
    )
    assert_same(theirs, garbage, a["state"], "999999")
    assert theirs == [["error", {"type": "stateMismatch"}]]


async def test_blob_ids_of_another_account_answer_as_missing_ones(world):
    _server, alice, bob, _carol = world
    a = await alice_data(alice)
    mine = (await bob.create_note(bob.own))["created"]["n"]["id"]
    missing_account = "a" + secrets.token_hex(8)

    for blob in (a["referenced"], a["unreferenced"]):
        fake = fake_blob_id()
        # Download: alice's blob id under bob's account, and under alice's account.
        theirs, missing = await bob.download(bob.own, blob), await bob.download(bob.own, fake)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.content == missing.content and theirs.headers.get(
            "content-type"
        ) == missing.headers.get("content-type")
        theirs = await bob.download(alice.own, blob)
        missing = await bob.download(missing_account, blob)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.content == missing.content

        # Blob/copy between bob's own accounts of alice's blob: notFound.
        calls = [
            await bob.call("Blob/copy", accountId=bob.group(), fromAccountId=bob.own, blobIds=[b])
            for b in (blob, fake)
        ]
        assert_same(calls[0], calls[1], blob, fake)
        assert calls[0][0][1]["notCopied"] == {blob: {"type": "notFound"}}

        # Note/set create and update with alice's blob as the attachment: invalidProperties.
        calls = [
            await bob.call(
                "Note/set", accountId=bob.own, create={"n": {"title": "t", "attachment": b}}
            )
            for b in (blob, fake)
        ]
        assert_same(calls[0], calls[1], blob, fake)
        assert calls[0][0][1]["notCreated"]["n"]["type"] == "invalidProperties"
        assert calls[0][0][1]["notCreated"]["n"]["properties"] == ["attachment"]
        calls = [
            await bob.call("Note/set", accountId=bob.own, update={mine: {"attachment": b}})
            for b in (blob, fake)
        ]
        assert_same(calls[0], calls[1], blob, fake)
        assert calls[0][0][1]["notUpdated"][mine]["type"] == "invalidProperties"

    # Upload into alice's account: 404, exactly as into an account that does not exist.
    theirs = await bob.http.post(f"/jmap/upload/{alice.own}/", content=b"x")
    missing = await bob.http.post(f"/jmap/upload/{missing_account}/", content=b"x")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.content == missing.content


async def test_a_group_members_unreferenced_upload_is_theirs_alone(world):
    """§6.1: an unreferenced blob is only the uploader's, even in a shared account; once a
    Note in the group account references it, every member can use it."""
    _server, alice, _bob, carol = world
    sales = alice.group()
    assert carol.group() == sales
    blob = await alice.upload(sales, b"for the sales team, eventually")
    assert (await alice.download(sales, blob)).status_code == 200

    async def as_missing_for_carol() -> None:
        fake = fake_blob_id()
        theirs, missing = await carol.download(sales, blob), await carol.download(sales, fake)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.content == missing.content
        calls = [
            await carol.call(
                "Note/set", accountId=sales, create={"n": {"title": "t", "attachment": b}}
            )
            for b in (blob, fake)
        ]
        assert_same(calls[0], calls[1], blob, fake)
        assert calls[0][0][1]["notCreated"]["n"]["type"] == "invalidProperties"
        calls = [
            await carol.call("Blob/copy", accountId=carol.own, fromAccountId=sales, blobIds=[b])
            for b in (blob, fake)
        ]
        assert_same(calls[0], calls[1], blob, fake)
        assert calls[0][0][1]["notCopied"] == {blob: {"type": "notFound"}}

    await as_missing_for_carol()
    # Alice copies it to her own account: still only hers there, and still not carol's.
    [[_, got]] = await alice.call(
        "Blob/copy", accountId=alice.own, fromAccountId=sales, blobIds=[blob]
    )
    assert got["copied"] == {blob: blob}
    await as_missing_for_carol()

    # A Note in the group account references it: now every member can use it.
    note = (await alice.create_note(sales, attachment=blob))["created"]["n"]["id"]
    response = await carol.download(sales, blob)
    assert response.status_code == 200 and response.content == b"for the sales team, eventually"
    await carol.create_note(sales, attachment=blob)
    [[_, got]] = await carol.call(
        "Blob/copy", accountId=carol.own, fromAccountId=sales, blobIds=[blob]
    )
    assert got["copied"] == {blob: blob}
    [[_, got]] = await carol.call("Note/get", accountId=sales, ids=[note])
    assert got["list"][0]["attachment"] == blob
