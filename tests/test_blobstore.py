"""The blob stores (``[storage.blob] store``): the configuration keys, the directory store
shared by several processes (nodes), and the database store on PostgreSQL.

The whole of test_blobs.py and test_blob_management.py runs on the database store with
``--backend=postgresql --blob-store=database``; the tests here check what is particular to
each store: where the bytes are, what is read for a range, transactions, temporary files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from jmap_host import ConfigError, load_host
from jmap_host.testing import AccountClient, config_text, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
# The blob store is the host's: these tests need none of the big plugins.
PLUGINS = '[plugins]\ndisabled = ["mail", "calendars", "contacts"]\n'
DATABASE = PLUGINS + '[storage.blob]\nstore = "database"\n'


async def alice_of(http) -> AccountClient:
    session = (await http.get("/jmap/session")).json()
    return AccountClient(http, session["primaryAccounts"][CORE])


def download_url(account: str, blob: str) -> str:
    return f"/jmap/download/{account}/{blob}/f.bin?type=application/octet-stream"


# -- configuration -----------------------------------------------------------------------


def test_database_store_needs_postgresql(tmp_path):
    """``store = "database"`` keeps blobs in PostgreSQL: with SQLite it is an error naming
    the key; an unknown store is refused too."""
    config = tmp_path / "jmap.toml"
    text = config_text(tmp_path, PLUGINS)  # (SQLite whatever the test back end)
    config.write_text(text + '[storage.blob]\nstore = "database"\n')
    with pytest.raises(ConfigError) as info:
        load_host(config)
    assert "storage.blob.store" in str(info.value)
    assert 'storage.type = "postgresql"' in str(info.value)
    config.write_text(text + '[storage.blob]\nstore = "cloud"\n')
    with pytest.raises(ConfigError) as info:
        load_host(config)
    assert "storage.blob.store" in str(info.value)


def test_blob_directory_defaults_and_resolves_against_the_config_file(tmp_path):
    """``storage.blob.directory`` defaults to ``blobs`` under ``storage.path``; a relative
    one is relative to the configuration file's directory, as ``storage.path`` is."""
    config = tmp_path / "jmap.toml"
    config.write_text(config_text(tmp_path, PLUGINS))  # (not --blob-store's choice)
    blob = load_host(config).config.data["storage"]["blob"]
    assert blob["store"] == "directory"
    assert blob["directory"] == str(tmp_path / "data" / "blobs")
    shared = load_host(write_config(tmp_path, PLUGINS + '[storage.blob]\ndirectory = "shared"\n'))
    assert shared.config.data["storage"]["blob"]["directory"] == str(tmp_path / "shared")


@pytest.mark.backend("postgresql")
def test_a_directory_with_the_database_store_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_host(write_config(tmp_path, DATABASE + 'directory = "/mnt/blobs"\n'))
    assert "storage.blob.directory" in str(info.value)


# -- the directory store -----------------------------------------------------------------


async def test_blobs_go_to_the_configured_directory(tmp_path):
    """Uploads, and the blobs plugins write, are files under ``storage.blob.directory``."""
    from jmap_host.blobs import read_blob

    shared = tmp_path / "mnt" / "blobs"
    config = write_config(tmp_path, PLUGINS + f'[storage.blob]\ndirectory = "{shared}"\n')
    async with running_server(config) as server:
        async with server.client("alice") as http:
            alice = await alice_of(http)
            blob = await alice.upload(b"on the shared mount")
            digest = blob[1:]
            assert (shared / digest[:2] / digest[2:4] / digest).read_bytes() == (
                b"on the shared mount"
            )
            assert not (tmp_path / "data" / "blobs").exists()
            assert read_blob(server.host, blob) == b"on the shared mount"


# Run by each of two processes at once (from the same moment): the same new blobs, in
# the same order, so that both find each one missing and write it.
WRITER = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from jmap_host.blobs import DirectoryBlobStore, write_blob

host = SimpleNamespace(blobstore=DirectoryBlobStore(Path(sys.argv[1])))
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
for i in range(200):
    write_blob(host, str(i).encode() * 20_000)
"""


def test_two_processes_writing_the_same_blobs_into_one_directory(tmp_path):
    """Two nodes sharing the directory write the same content-addressed blobs at once:
    every file is complete (a fully written, fsynced temporary file of one's own, renamed
    into place), and no temporary file is left behind."""
    import hashlib
    from types import SimpleNamespace

    from jmap_host.blobs import DirectoryBlobStore, read_blob

    directory = tmp_path / "blobs"
    start = str(time.time() + 2)  # (both started by then)
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(directory), start]) for _ in range(2)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    store = DirectoryBlobStore(directory)
    host = SimpleNamespace(blobstore=store)
    for i in range(200):
        data = str(i).encode() * 20_000
        assert read_blob(host, "G" + hashlib.sha256(data).hexdigest()) == data
    assert list(store.tmp_dir.iterdir()) == []


async def test_the_sweeper_keeps_temporary_files_younger_than_the_upload_expiry(tmp_path):
    """A temporary file (an upload being received, a staged blob) may belong to another
    node still writing it: the sweeper removes only those not modified for the upload
    expiry (an hour at least)."""
    from jmap_host.blobs import blobstore, sweep_blobs

    config = write_config(tmp_path, PLUGINS + '[storage.blob]\nupload-expiry = "1h"\n')
    async with running_server(config) as server:
        tmp_dir = blobstore(server.host).tmp_dir
        tmp_dir.mkdir(parents=True, exist_ok=True)
        writing, abandoned = tmp_dir / "node-b-writing", tmp_dir / "node-b-crashed"
        writing.write_bytes(b"half an upload")
        abandoned.write_bytes(b"left by a crash")
        hours_ago = time.time() - 2 * 3600
        os.utime(writing, (hours_ago, time.time() - 59 * 60))  # written to a minute ago
        os.utime(abandoned, (hours_ago, hours_ago))
        await sweep_blobs(server.host)
        assert writing.exists()
        assert not abandoned.exists()


# -- the database store ------------------------------------------------------------------


def _data_rows(db) -> dict[str, int]:
    from jmap_host.blobs import DATA_TABLE

    return {r[0]: r[1] for r in db.execute(f"SELECT id, octet_length(data) FROM [{DATA_TABLE}]")}


@pytest.mark.backend("postgresql")
async def test_database_store_keeps_blobs_in_the_database(tmp_path):
    """With ``store = "database"`` an upload is a row of host_blob_data (no file), its
    download and Blob/copy read it, and the sweeper deletes the row of an expired,
    unreferenced blob; the column is kept uncompressed, for ranges."""
    from jmap_host.blobs import DATA_TABLE, sweep_blobs

    async with running_server(write_config(tmp_path, DATABASE)) as server:
        store = server.host.store
        async with server.client("alice") as http:
            alice = await alice_of(http)
            blob = await alice.upload(b"in the database")
            assert await store.read(_data_rows) == {blob: 15}
            blobs_dir = tmp_path / "data" / "blobs"
            files = [p for p in blobs_dir.rglob("*") if p.is_file()] if blobs_dir.exists() else []
            assert files == []  # (the temporary file of the upload is gone too)
            got = await alice.http.get(download_url(alice.account, blob))
            assert got.status_code == 200 and got.content == b"in the database"
            copied = await alice.ok(
                "Blob/copy", fromAccountId=alice.account, blobIds=[blob, "G" + "0" * 64]
            )
            assert copied["copied"] == {blob: blob}
            assert copied["notCopied"] == {"G" + "0" * 64: {"type": "notFound"}}

            swept = await sweep_blobs(server.host, now=time.time() + 25 * 3600)
            assert swept.files == [blob]
            assert await store.read(_data_rows) == {}
            got = await alice.http.get(download_url(alice.account, blob))
            assert got.status_code == 404

        storage = await store.read(
            lambda db: db.execute(
                "SELECT attstorage FROM pg_attribute WHERE attrelid = ?::regclass "
                "AND attname = 'data'",
                [DATA_TABLE],
            ).fetchone()[0]
        )
        assert storage == "e"  # EXTERNAL: out of line, uncompressed


@pytest.mark.backend("postgresql")
async def test_database_store_ranges_read_slices_not_the_blob(tmp_path, monkeypatch):
    """A Range download, and the streaming of a large blob, read ``substring`` slices of
    the value: the query that reads a whole blob is never made."""
    from jmap_host import blobs

    data = bytes(i % 251 for i in range(3 * blobs.CHUNK + 123))
    async with running_server(write_config(tmp_path, DATABASE)) as server:
        async with server.client("alice") as http:
            alice = await alice_of(http)
            blob = await alice.upload(data)

            def whole(*args):
                raise AssertionError("a download read the whole blob")

            monkeypatch.setattr(blobs, "_stored_data", whole)
            url = download_url(alice.account, blob)
            part = await alice.http.get(url, headers={"Range": "bytes=1000-1999"})
            assert part.status_code == 206 and part.content == data[1000:2000]
            streamed = await alice.http.get(url)
            assert streamed.status_code == 200 and streamed.content == data
            first, last = blobs.CHUNK - 7, 2 * blobs.CHUNK + 9
            part = await alice.http.get(url, headers={"Range": f"bytes={first}-{last}"})
            assert part.content == data[first : last + 1]


@pytest.mark.backend("postgresql")
async def test_database_store_writes_in_the_transaction_that_names_the_blob(tmp_path):
    """write_blob inside a write transaction writes in it: rolled back with it, visible to
    it before COMMIT; outside one it commits its own before returning (durable before any
    row names it); StagedBlobs.place inserts in the transaction too."""
    from jmap_host.blobs import StagedBlobs, read_blob, write_blob

    async with running_server(write_config(tmp_path, DATABASE)) as server:
        host, store = server.host, server.host.store

        def fails(db):
            blob = write_blob(host, b"rolled back")
            assert read_blob(host, blob) == b"rolled back"  # (this transaction's own)
            raise RuntimeError("the record failed")

        with pytest.raises(RuntimeError):
            await store.write(fails)
        assert await store.read(_data_rows) == {}

        blob = await trio.to_thread.run_sync(write_blob, host, b"on its own")
        other = store.connect()  # another connection sees it committed
        try:
            assert _data_rows(other) == {blob: 10}
        finally:
            other.conn.raw.close()

        staged = StagedBlobs(host)
        kept = staged.stage(b"kept")
        staged.stage(b"never placed")
        again = staged.stage(b"on its own")

        def place(db):
            staged.place([kept, again])
            staged.wait()

        await store.write(place)
        staged.close()
        assert await store.read(_data_rows) == {blob: 10, kept: 4}


@pytest.mark.backend("postgresql")
async def test_database_store_upload_put_back_if_swept_before_its_row(tmp_path, monkeypatch):
    """An upload's bytes are inserted before the transaction of its row; if the sweeper
    deleted that content's row in between (an older upload of it expired), the row's
    transaction inserts them again, so the acknowledged upload has its bytes."""
    from jmap_host import blobs

    async with running_server(write_config(tmp_path, DATABASE)) as server:
        store = server.host.store
        prepare = blobs.DatabaseBlobStore.prepare_upload

        async def prepare_then_swept(self, tmp: Path, blob_id: str) -> None:
            await prepare(self, tmp, blob_id)
            await store.write(lambda db: self.delete(db, blob_id))

        monkeypatch.setattr(blobs.DatabaseBlobStore, "prepare_upload", prepare_then_swept)
        async with server.client("alice") as http:
            alice = await alice_of(http)
            blob = await alice.upload(b"swept in between")
            assert await store.read(_data_rows) == {blob: 16}
            got = await alice.http.get(download_url(alice.account, blob))
            assert got.content == b"swept in between"
