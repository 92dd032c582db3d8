"""Upload and download (RFC 8620 §6.1, §6.2) and the two upload limits of §2
(maxSizeUpload, maxConcurrentUpload), which the core capability advertises."""

from __future__ import annotations

import trio

from jmap_host.testing import running_server, write_config

CORE = "urn:ietf:params:jmap:core"
LIMIT = "urn:ietf:params:jmap:error:limit"


async def session_of(client):
    return (await client.get("/jmap/session")).json()


async def test_upload_then_download(jmap_config):
    """§6.1: 201 with accountId, blobId, type, size; §6.2: the bytes back, with the name and
    type asked for, Content-Disposition, and an immutable private cache policy."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        session = await session_of(client)
        account = session["primaryAccounts"][CORE]
        upload_url = session["uploadUrl"].replace("{accountId}", account)
        response = await client.post(
            upload_url, content=b"hello blob", headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 201
        body = response.json()
        assert body == {
            "accountId": account,
            "blobId": body["blobId"],
            "type": "text/plain",
            "size": 10,
        }
        assert 1 <= len(body["blobId"]) <= 255 and body["blobId"].isalnum()  # §1.2 Id syntax
        url = (
            session["downloadUrl"]
            .replace("{accountId}", account)
            .replace("{blobId}", body["blobId"])
            .replace("{name}", "h%C3%A9llo.txt")
            .replace("{type}", "text/plain")
        )
        download = await client.get(url)
        assert download.status_code == 200
        assert download.content == b"hello blob"
        assert download.headers["content-type"] == "text/plain"
        assert "filename*=UTF-8''h%C3%A9llo.txt" in download.headers["content-disposition"]
        assert download.headers["cache-control"] == "private, immutable, max-age=31536000"


async def test_one_account_cannot_reach_another_accounts_blob(jmap_config):
    """Security: bob can neither upload to alice's account nor download her blob by id,
    and the answer is the same as for a blob that does not exist."""
    async with running_server(jmap_config) as server:
        async with server.client("alice") as alice:
            session = await session_of(alice)
            account = session["primaryAccounts"][CORE]
            blob = (await alice.post(f"/jmap/upload/{account}/", content=b"secret")).json()[
                "blobId"
            ]
        async with server.client("bob") as bob:
            bob_account = (await session_of(bob))["primaryAccounts"][CORE]
            assert (await bob.post(f"/jmap/upload/{account}/", content=b"x")).status_code == 404
            theirs = await bob.get(f"/jmap/download/{account}/{blob}/f?type=text/plain")
            mine = await bob.get(f"/jmap/download/{bob_account}/{blob}/f?type=text/plain")
            missing = await bob.get(f"/jmap/download/{bob_account}/Gnope/f?type=text/plain")
            assert theirs.status_code == mine.status_code == missing.status_code == 404
            assert mine.json()["detail"] == missing.json()["detail"]


async def test_max_size_upload(tmp_path):
    """maxSizeUpload is advertised and enforced, with or without Content-Length."""
    config = write_config(tmp_path, "[jmap.protocol.upload]\nmax-size = 2048\n")
    async with running_server(config) as server, server.client("alice") as client:
        session = await session_of(client)
        assert session["capabilities"][CORE]["maxSizeUpload"] == 2048
        account = session["primaryAccounts"][CORE]
        ok = await client.post(f"/jmap/upload/{account}/", content=b"x" * 2048)
        assert ok.status_code == 201
        big = await client.post(f"/jmap/upload/{account}/", content=b"x" * 2049)
        assert big.status_code == 413
        assert big.json()["type"] == LIMIT and big.json()["limit"] == "maxSizeUpload"

        async def chunks():
            for _ in range(5):
                yield b"y" * 1000

        chunked = await client.post(f"/jmap/upload/{account}/", content=chunks())
        assert chunked.status_code == 413
        assert chunked.json()["limit"] == "maxSizeUpload"


async def test_max_concurrent_upload(tmp_path):
    """maxConcurrentUpload: one upload more than the limit at once is refused (429)."""
    config = write_config(tmp_path, "[jmap.protocol.upload]\nmax-concurrent = 2\n")
    release = trio.Event()
    async with running_server(config) as server, server.client("alice") as client:
        session = await session_of(client)
        assert session["capabilities"][CORE]["maxConcurrentUpload"] == 2
        account = session["primaryAccounts"][CORE]
        sent = trio.Semaphore(0)
        statuses = []

        async def slow_upload():
            async def body():
                yield b"first part"
                sent.release()
                await release.wait()
                yield b" and the rest"

            response = await client.post(f"/jmap/upload/{account}/", content=body())
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_upload)
            nursery.start_soon(slow_upload)
            await sent.acquire()
            await sent.acquire()
            await trio.sleep(0.2)  # both uploads are now inside the server
            refused = await client.post(f"/jmap/upload/{account}/", content=b"third")
            assert refused.status_code == 429
            assert refused.json()["limit"] == "maxConcurrentUpload"
            release.set()
        assert statuses == [201, 201]
        assert (await client.post(f"/jmap/upload/{account}/", content=b"later")).status_code == 201


# -- helpers for the data-layer tests ------------------------------------------------------------

# A second member of the group account "sales", so two users share one account.
CAROL = """
[[directory."memory".principals]]
name = "carol"
secret = "carol-password"
email = ["carol@example.org"]
member-of = ["sales"]
"""


def carol(server):
    return server.client("carol", "carol-password")


async def accounts_of(client) -> tuple[str, str | None]:
    """(own account id, the sales group account id or None)."""
    session = await session_of(client)
    own = session["primaryAccounts"][CORE]
    groups = [a for a, acc in session["accounts"].items() if not acc["isPersonal"]]
    return own, (groups[0] if groups else None)


async def upload_blob(client, account: str, data: bytes, media: str = "text/plain") -> str:
    response = await client.post(
        f"/jmap/upload/{account}/", content=data, headers={"Content-Type": media}
    )
    assert response.status_code == 201, response.text
    return response.json()["blobId"]


def download_url(account: str, blob: str, name: str = "f.bin", media: str = "text/plain") -> str:
    return f"/jmap/download/{account}/{blob}/{name}?type={media}"


async def blob_copy_call(client, args: dict) -> list:
    from jmap_host.testing import api

    return (await api(client, [["Blob/copy", args, "c"]]))["methodResponses"][0]


# -- Range requests (RFC 9110 §14) ---------------------------------------------------------------


async def test_download_ranges(jmap_config):
    """RFC 9110 §14: a single byte range gets 206 with Content-Range (first-last, open-ended,
    suffix, suffix longer than the blob); an unsatisfiable one gets 416 with
    ``Content-Range: bytes */size``; several ranges, or an If-Range that does not match,
    get the whole 200 body.  Every answer advertises ``Accept-Ranges: bytes``."""
    data = bytes(range(256)) * 4  # 1024 octets
    async with running_server(jmap_config) as server, server.client("alice") as client:
        own, _ = await accounts_of(client)
        blob = await upload_blob(client, own, data)
        url = download_url(own, blob)

        whole = await client.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["accept-ranges"] == "bytes"

        async def ranged(spec: str, **headers):
            return await client.get(url, headers={"Range": spec, **headers})

        r = await ranged("bytes=10-19")
        assert r.status_code == 206 and r.content == data[10:20]
        assert r.headers["content-range"] == "bytes 10-19/1024"
        assert r.headers["content-length"] == "10"
        assert r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-type"] == "text/plain"
        assert r.headers["cache-control"] == "private, immutable, max-age=31536000"
        assert "attachment" in r.headers["content-disposition"]

        r = await ranged("bytes=1000-")
        assert r.status_code == 206 and r.content == data[1000:]
        assert r.headers["content-range"] == "bytes 1000-1023/1024"

        r = await ranged("bytes=-24")
        assert r.status_code == 206 and r.content == data[-24:]
        assert r.headers["content-range"] == "bytes 1000-1023/1024"

        r = await ranged("bytes=1000-5000")  # last-pos past the end is clamped
        assert r.status_code == 206 and r.headers["content-range"] == "bytes 1000-1023/1024"

        r = await ranged("bytes=-5000")  # suffix longer than the blob: all of it
        assert r.status_code == 206 and r.content == data
        assert r.headers["content-range"] == "bytes 0-1023/1024"

        for unsatisfiable in ("bytes=1024-", "bytes=5000-6000", "bytes=-0"):
            r = await ranged(unsatisfiable)
            assert r.status_code == 416, unsatisfiable
            assert r.headers["content-range"] == "bytes */1024"

        for ignored in ("bytes=0-1,5-6", "bytes=20-10", "items=0-1", "bytes=x-y"):
            r = await ranged(ignored)
            assert r.status_code == 200 and r.content == data, ignored

        etag = whole.headers["etag"]
        assert (await ranged("bytes=0-0", **{"If-Range": etag})).status_code == 206
        stale = await ranged("bytes=0-0", **{"If-Range": '"other"'})
        assert stale.status_code == 200 and stale.content == data


async def test_large_download_is_streamed_with_ranges(jmap_config):
    """A blob larger than one chunk is streamed; Content-Length is still sent, and a range
    spanning chunk boundaries comes back exactly."""
    from jmap_host.blobs import CHUNK

    data = bytes(i % 251 for i in range(3 * CHUNK + 123))
    async with running_server(jmap_config) as server, server.client("alice") as client:
        own, _ = await accounts_of(client)
        blob = await upload_blob(client, own, data, "application/octet-stream")
        url = download_url(own, blob, media="application/octet-stream")
        whole = await client.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-length"] == str(len(data))
        first, last = CHUNK - 7, 2 * CHUNK + 9
        part = await client.get(url, headers={"Range": f"bytes={first}-{last}"})
        assert part.status_code == 206 and part.content == data[first : last + 1]
        assert part.headers["content-length"] == str(last - first + 1)
        head = await client.head(url)
        assert head.status_code == 200 and head.content == b""


# -- visibility (RFC 8620 §6, §6.1) --------------------------------------------------------------


async def test_unreferenced_upload_is_private_to_the_uploader_in_a_shared_account(tmp_path):
    """§6.1: "unreferenced blobs MUST only be accessible to the uploader, even in shared
    accounts".  Alice uploads to the group account sales; carol, also a member, gets the
    same 404 as for a blob that does not exist.  Once an object in sales references the
    blob (as the standard-method engine records it), every member can download it."""
    from jmap_host.blobs import (
        add_blob_reference,
        blob_visible,
        blobs_visible,
        remove_blob_references,
    )

    config = write_config(tmp_path, CAROL)
    async with running_server(config) as server:
        async with server.client("alice") as alice:
            _, sales = await accounts_of(alice)
            assert sales is not None
            blob = await upload_blob(alice, sales, b"quarterly numbers")
            assert (await alice.get(download_url(sales, blob))).status_code == 200
        async with carol(server) as client:
            _, carol_sales = await accounts_of(client)
            assert carol_sales == sales
            hidden = await client.get(download_url(sales, blob))
            missing = await client.get(download_url(sales, "G" + "0" * 64))
            assert hidden.status_code == missing.status_code == 404
            assert hidden.json()["detail"] == missing.json()["detail"]

            store = server.host.store
            await store.write(lambda db: add_blob_reference(db, sales, blob, "Note:n1"))
            shared = await client.get(download_url(sales, blob))
            assert shared.status_code == 200 and shared.content == b"quarterly numbers"
            assert await store.read(lambda db: blob_visible(db, sales, blob, "carol"))

            await store.write(lambda db: remove_blob_references(db, sales, "Note:n1"))
            assert (await client.get(download_url(sales, blob))).status_code == 404
            assert not await store.read(lambda db: blob_visible(db, sales, blob, "carol"))
            assert await store.read(lambda db: blob_visible(db, sales, blob, "alice"))
            # Many at once (Email/import's check): the same answers, unknown ids left out.
            many = [blob, "G" + "1" * 64, blob]
            assert await store.read(lambda db: blobs_visible(db, sales, many, "alice")) == {blob}
            assert await store.read(lambda db: blobs_visible(db, sales, many, "carol")) == set()


# -- expiry (RFC 8620 §6) ----------------------------------------------------------------------


async def test_sweep_removes_expired_uploads_and_unnamed_files(jmap_config):
    """§6: an unreferenced upload is kept for at least the configured expiry (24h by
    default), then its row goes; the file goes only when no row in any account names its
    hash, and a referenced blob never expires."""
    import time

    from jmap_host.blobs import (
        UPLOAD_TABLE,
        add_blob_reference,
        read_blob,
        remove_blob_references,
        sweep_blobs,
    )

    async with running_server(jmap_config) as server:
        host = server.host
        async with server.client("alice") as alice:
            alice_account, _ = await accounts_of(alice)
            blob = await upload_blob(alice, alice_account, b"same bytes")
            lonely = await upload_blob(alice, alice_account, b"only alice has these")
        async with server.client("bob") as bob:
            bob_account, _ = await accounts_of(bob)
            assert await upload_blob(bob, bob_account, b"same bytes") == blob
            await host.store.write(lambda db: add_blob_reference(db, bob_account, blob, "Doc:1"))

            now = time.time()
            early = await sweep_blobs(host, now=now + 3000)  # before the expiry: nothing
            assert early.rows == 0 and early.files == []

            later = await sweep_blobs(host, now=now + 25 * 3600)
            assert later.rows == 2  # alice's two uploads; bob's is referenced
            assert later.files == [lonely]
            assert read_blob(host, lonely) is None
            assert read_blob(host, blob) == b"same bytes"  # bob's account still names it
            async with server.client("alice") as alice:
                assert (await alice.get(download_url(alice_account, blob))).status_code == 404
            assert (await bob.get(download_url(bob_account, blob))).status_code == 200

            await host.store.write(lambda db: remove_blob_references(db, bob_account, "Doc:1"))
            final = await sweep_blobs(host, now=now + 25 * 3600)
            assert final.rows == 1 and final.files == [blob]
            assert read_blob(host, blob) is None
            assert (await bob.get(download_url(bob_account, blob))).status_code == 404
            left = await host.store.read(lambda db: db[UPLOAD_TABLE].count)
            assert left == 0


async def test_reupload_resets_expiry_and_server_sweeps_at_start(tmp_path):
    """§6: re-uploading the same bytes SHOULD reset the expiry; the server runs the sweeper
    in its background from start-up, so an upload that expired while it was down is gone
    once it is back."""
    from jmap_host.blobs import UPLOAD_TABLE, read_blob

    config = write_config(tmp_path, '[storage.blob]\nupload-expiry = "2h"\n')
    async with running_server(config) as server, server.client("alice") as alice:
        own, _ = await accounts_of(alice)
        blob = await upload_blob(alice, own, b"renew me")
        store = server.host.store

        def upload_row(db):
            [row] = db.query(
                f"SELECT * FROM [{UPLOAD_TABLE}] WHERE account = ? AND blob_id = ? "
                "AND principal = ?",
                [own, blob, "alice"],
            )
            return row

        def expires(db):
            return upload_row(db)["expires"]

        row = await store.read(upload_row)
        assert row["expires"] - row["created"] == 7200  # storage.blob.upload-expiry
        first = row["expires"]
        await store.write(lambda db: db[UPLOAD_TABLE].update((own, blob, "alice"), {"expires": 5}))
        await upload_blob(alice, own, b"renew me")
        assert await store.read(expires) >= first
        # Now let it lapse while the server is down.
        await store.write(lambda db: db[UPLOAD_TABLE].update((own, blob, "alice"), {"expires": 5}))
        assert read_blob(server.host, blob) == b"renew me"
    async with running_server(config) as server, server.client("alice") as alice:
        with trio.fail_after(5):
            while read_blob(server.host, blob) is not None:
                await trio.sleep(0.02)
        assert (await alice.get(download_url(own, blob))).status_code == 404


def test_upload_expiry_under_an_hour_is_a_config_error(tmp_path):
    """§6: "an unreferenced blob MUST NOT be deleted for at least 1 hour from the time of
    upload", so a shorter ``storage.blob.upload-expiry`` is refused, naming the key."""
    import pytest

    from jmap_host import ConfigError, load_host

    with pytest.raises(ConfigError) as info:
        load_host(write_config(tmp_path, '[storage.blob]\nupload-expiry = "59m"\n'))
    assert "storage.blob.upload-expiry" in str(info.value)
    assert "at least 1h" in str(info.value)
    host = load_host(write_config(tmp_path, '[storage.blob]\nupload-expiry = "1h"\n'))
    assert host.config.get("storage.blob.upload-expiry") == 3600
    assert load_host(write_config(tmp_path)).config.get("storage.blob.upload-expiry") == 86400


def test_migration_keeps_blobs_uploaded_before_it(tmp_path):
    """The "blob_access" migration moves rows of the first blob table into the upload table,
    attributed to the account's owner."""
    import sqlite_utils

    from jmap_host.blobs import UPLOAD_TABLE
    from jmap_host.migrations import host_migrations

    db = sqlite_utils.Database(tmp_path / "old.db")
    host_migrations.apply(db, stop_before="blob_access")
    db["host_account"].insert({"id": "a1", "principal": "alice", "created": 100})
    db["host_blob"].insert(
        {
            "account": "a1",
            "blob_id": "G" + "1" * 64,
            "type": "text/plain",
            "size": 3,
            "created": 100,
        }
    )
    host_migrations.apply(db)
    assert not db["host_blob"].exists()
    [row] = list(db[UPLOAD_TABLE].rows)
    assert row["principal"] == "alice" and row["expires"] == 100 + 86400
    assert row["type"] == "text/plain" and row["size"] == 3


# -- Blob/copy (RFC 8620 §6.3) -----------------------------------------------------------------


async def test_blob_copy_between_own_and_group_account(tmp_path):
    """§6.3: alice copies a blob from her account into sales and back; ``copied`` maps the
    id to the (same, content-addressed) id in the target account, ``notCopied`` is null.
    In sales the copy is alice's unreferenced blob: carol cannot see it (§6.1)."""
    config = write_config(tmp_path, CAROL)
    async with running_server(config) as server:
        async with server.client("alice") as alice:
            own, sales = await accounts_of(alice)
            blob = await upload_blob(alice, own, b"to share")
            assert (await alice.get(download_url(sales, blob))).status_code == 404
            name, result, call_id = await blob_copy_call(
                alice, {"fromAccountId": own, "accountId": sales, "blobIds": [blob]}
            )
            assert (name, call_id) == ("Blob/copy", "c")
            assert result == {
                "fromAccountId": own,
                "accountId": sales,
                "copied": {blob: blob},
                "notCopied": None,
            }
            copied = await alice.get(download_url(sales, blob))
            assert copied.status_code == 200 and copied.content == b"to share"
            assert copied.headers["content-type"] == "text/plain"

            back = await upload_blob(alice, sales, b"from the group")
            _, result, _ = await blob_copy_call(
                alice, {"fromAccountId": sales, "accountId": own, "blobIds": [back, "Gnope"]}
            )
            assert result["copied"] == {back: back}
            assert result["notCopied"] == {"Gnope": {"type": "notFound"}}
            assert (await alice.get(download_url(own, back))).status_code == 200
        async with carol(server) as client:
            assert (await client.get(download_url(sales, blob))).status_code == 404


async def test_blob_copy_of_a_blob_the_caller_cannot_see_is_not_found(tmp_path):
    """§6.3 notFound, and §6.1: carol cannot copy alice's unreferenced upload out of the
    account they share; the answer is the one a nonexistent id gets."""
    config = write_config(tmp_path, CAROL)
    async with running_server(config) as server:
        async with server.client("alice") as alice:
            _, sales = await accounts_of(alice)
            blob = await upload_blob(alice, sales, b"alice only, for now")
        async with carol(server) as client:
            own, _ = await accounts_of(client)
            missing = "G" + "f" * 64
            _, result, _ = await blob_copy_call(
                client, {"fromAccountId": sales, "accountId": own, "blobIds": [blob, missing]}
            )
            assert result["copied"] is None
            assert result["notCopied"] == {
                blob: {"type": "notFound"},
                missing: {"type": "notFound"},
            }


async def test_blob_copy_account_errors(jmap_config):
    """§6.3: ``fromAccountNotFound`` when fromAccountId is not one of the caller's accounts,
    ``accountNotFound`` (§3.6.2) for accountId; invalidArguments for malformed arguments."""
    async with running_server(jmap_config) as server:
        async with server.client("alice") as alice:
            alice_account, _ = await accounts_of(alice)
        async with server.client("bob") as bob:
            own, _ = await accounts_of(bob)
            blob = await upload_blob(bob, own, b"bob's")
            name, error, _ = await blob_copy_call(
                bob, {"fromAccountId": alice_account, "accountId": own, "blobIds": [blob]}
            )
            assert (name, error) == ("error", {"type": "fromAccountNotFound"})
            name, error, _ = await blob_copy_call(
                bob, {"fromAccountId": "nope", "accountId": own, "blobIds": [blob]}
            )
            assert (name, error) == ("error", {"type": "fromAccountNotFound"})
            name, error, _ = await blob_copy_call(
                bob, {"fromAccountId": own, "accountId": alice_account, "blobIds": [blob]}
            )
            assert (name, error) == ("error", {"type": "accountNotFound"})
            for bad in (
                {"fromAccountId": own, "accountId": own, "blobIds": "x"},
                {"fromAccountId": 5, "accountId": own, "blobIds": []},
            ):
                name, error, _ = await blob_copy_call(bob, bad)
                assert (name, error["type"]) == ("error", "invalidArguments")


async def test_blob_copy_cannot_probe_another_accounts_blob(jmap_config):
    """Security: bob naming alice's blob id, from his own account, gets exactly the answer
    a nonexistent id gets, so he cannot learn that it exists (§6)."""
    async with running_server(jmap_config) as server:
        async with server.client("alice") as alice:
            alice_account, _ = await accounts_of(alice)
            blob = await upload_blob(alice, alice_account, b"alice's secret")
        async with server.client("bob") as bob:
            own, _ = await accounts_of(bob)
            missing = "G" + "e" * 64
            answers = []
            for candidate in (blob, missing):
                _, result, _ = await blob_copy_call(
                    bob, {"fromAccountId": own, "accountId": own, "blobIds": [candidate]}
                )
                answers.append((result["copied"], result["notCopied"][candidate], sorted(result)))
            assert (
                answers[0]
                == answers[1]
                == (
                    None,
                    {"type": "notFound"},
                    ["accountId", "copied", "fromAccountId", "notCopied"],
                )
            )
            assert (await bob.get(download_url(own, blob))).status_code == 404


async def test_core_capability_is_in_account_capabilities(jmap_config):
    """Blob/copy takes an accountId, so every account lists the core URN in
    accountCapabilities (§2: the capabilities whose methods the account supports), with
    the core limits in it as in the session's capabilities: a client library reads the
    account's entry first and falls back to minimum limits when it is {}."""
    async with running_server(jmap_config) as server, server.client("alice") as alice:
        session = await session_of(alice)
        core = session["capabilities"][CORE]
        assert core["maxObjectsInGet"] > 0 and core["maxSizeUpload"] > 0
        assert len(session["accounts"]) == 2  # alice's own and the group sales
        for account in session["accounts"].values():
            assert account["accountCapabilities"][CORE] == core


def test_staged_blobs_place_only_what_commits(tmp_path):
    """StagedBlobs (Email/import): blobs staged before the write transaction; place() (in
    it) stores only the blobs named, rewrites one that vanished since stage(), and close()
    drops the staged blobs never placed, leaving no temporary file behind."""
    from jmap_host import load_host
    from jmap_host.blobs import StagedBlobs, blobstore, read_blob, write_blob

    host = load_host(write_config(tmp_path))
    host.store.migrate()
    try:
        existing = host.store.write_sync(lambda db: write_blob(host, b"already here"))
        staged = StagedBlobs(host)
        kept = staged.stage(b"kept")
        dropped = staged.stage(b"dropped")
        assert staged.stage(b"kept") == kept
        assert staged.stage(b"already here") == existing
        # e.g. swept between stage() and the transaction
        assert host.store.write_sync(lambda db: blobstore(host).delete(db, existing))

        def place(db):
            staged.place([kept, existing, kept])
            staged.wait()

        host.store.write_sync(place)
        staged.close()
        assert read_blob(host, kept) == b"kept"
        assert read_blob(host, existing) == b"already here"
        assert read_blob(host, dropped) is None
        tmp_dir = blobstore(host).tmp_dir
        assert not tmp_dir.exists() or not list(tmp_dir.iterdir())
    finally:
        host.store.close()
