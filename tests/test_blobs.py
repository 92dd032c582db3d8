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
