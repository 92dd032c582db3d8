"""A busy or locked database is a temporary condition (issue "Data layer"): the client gets
the method error ``serverUnavailable`` (HTTP 200) or, outside the API, HTTP 503 with
Retry-After; never a 500 or a serverFail.  ``storage.busy-timeout`` bounds the wait."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager

import psycopg
import pytest

from jmap_host import objectstore
from jmap_host.pgstore import WRITE_LOCK, PgStore
from jmap_host.store import Store, StoreUnavailable
from jmap_host.testing import BASE_CONFIG, api, running_server, write_config

# The example plugin (the sample Note type) is opt-in.
EXAMPLE_ON = '[plugins]\nopt-in = ["example"]\n'

CORE = "urn:ietf:params:jmap:core"
USING = [CORE, "https://jmap-host.org/ext/example"]
BUSY_CONFIG = BASE_CONFIG.replace('path = "{data}"', 'path = "{data}"\nbusy-timeout = "200ms"')


@contextmanager
def held(store, begin: str):
    """Another connection holding the database's write lock until the block ends (on
    PostgreSQL: another node's write transaction, holding the store's write lock)."""
    if isinstance(store, PgStore):
        with psycopg.connect(store.url, autocommit=True) as other:
            other.execute("BEGIN")
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            other.execute("INSERT INTO host_account (id, principal, created) VALUES ('zz', 'z', 0)")
            yield other
            other.execute("ROLLBACK")
        return
    other = sqlite3.connect(store.path, timeout=0, isolation_level=None)
    try:
        other.execute(begin)
        other.execute("INSERT INTO host_account (id, principal, created) VALUES ('zz', 'z', 0)")
        yield other
        other.execute("ROLLBACK")
    finally:
        other.close()


def lock_error(store) -> Exception:
    """What the store's database raises when it meets a lock it waited for too long."""
    if isinstance(store, PgStore):
        return psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
    return sqlite3.OperationalError("database is locked")


def only(response: dict) -> list:
    [call] = response["methodResponses"]
    return call


async def note_set(client, account: str, title: str = "t") -> list:
    return only(
        await api(
            client,
            [["Note/set", {"accountId": account, "create": {"n": {"title": title}}}, "c"]],
            using=USING,
        )
    )


def test_busy_timeout_is_configurable(tmp_path):
    import jmap_host

    host = jmap_host.load_host(write_config(tmp_path, EXAMPLE_ON, base=BUSY_CONFIG))
    assert host.store.busy_timeout == pytest.approx(0.2)
    default = jmap_host.load_host(write_config(tmp_path, EXAMPLE_ON, name="default.toml"))
    assert default.store.busy_timeout == 5.0


@pytest.mark.parametrize("begin", ["BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"])
async def test_a_held_write_lock_is_server_unavailable(tmp_path, begin):
    """While another connection holds the write lock: Note/set, Note/copy's write and
    Blob/copy answer serverUnavailable after the busy timeout (not 5 s), an upload 503;
    reads go on (WAL).  Once released, the same calls succeed."""
    config = write_config(tmp_path, EXAMPLE_ON, base=BUSY_CONFIG)
    async with running_server(config) as server, server.client("alice") as client:
        session = (await client.get("/jmap/session")).json()
        account = session["primaryAccounts"][CORE]
        blob_dir = server.host.store.directory / "blobs"
        upload_url = f"/jmap/upload/{account}/"
        blob = (await client.post(upload_url, content=b"before")).json()["blobId"]
        with held(server.host.store, begin):
            started = time.monotonic()
            name, args, _ = await note_set(client, account)
            waited = time.monotonic() - started
            assert [name, args] == ["error", {"type": "serverUnavailable"}]
            assert 0.15 < waited < 2.5  # storage.busy-timeout, not the 5 s default

            upload = await client.post(upload_url, content=b"during")
            assert upload.status_code == 503, upload.text
            assert upload.headers["retry-after"] == "5"
            assert upload.json()["status"] == 503

            blob_copy = only(
                await api(
                    client,
                    [
                        [
                            "Blob/copy",
                            {"fromAccountId": account, "accountId": account, "blobIds": [blob]},
                            "b",
                        ]
                    ],
                )
            )
            assert blob_copy[:2] == ["error", {"type": "serverUnavailable"}]

            # WAL: readers are not blocked by a writer, whatever its BEGIN.
            got = only(await api(client, [["Note/get", {"accountId": account}, "g"]], using=USING))
            assert got[0] == "Note/get" and got[1]["list"] == []

        name, args, _ = await note_set(client, account)
        assert name == "Note/set" and "n" in args["created"]
        assert (await client.post(upload_url, content=b"after")).status_code == 201
        # The failed attempts left nothing behind: one note, one change.
        assert args["newState"] == "1"
        assert not list((blob_dir / "tmp").iterdir())


async def test_a_lock_met_inside_a_method_is_server_unavailable(tmp_path, monkeypatch):
    """A "database is locked" raised while a method's read or write runs (not at BEGIN)
    becomes serverUnavailable; inside an upload's transaction, 503.  Nothing is written."""
    config = write_config(tmp_path, EXAMPLE_ON, base=BUSY_CONFIG)
    async with running_server(config) as server, server.client("alice") as client:
        locked = lock_error(server.host.store)
        session = (await client.get("/jmap/session")).json()
        account = session["primaryAccounts"][CORE]

        def fail(*args, **kwargs):
            raise locked

        with monkeypatch.context() as m:
            m.setattr(objectstore, "read_records", fail)
            got = only(
                await api(client, [["Note/get", {"accountId": account, "ids": ["x"]}, "g"]], USING)
            )
            assert got[:2] == ["error", {"type": "serverUnavailable"}]
        with monkeypatch.context() as m:
            m.setattr(objectstore, "insert_record", fail)
            assert (await note_set(client, account))[:2] == [
                "error",
                {"type": "serverUnavailable"},
            ]
        with monkeypatch.context() as m:
            from jmap_host import blobs

            m.setattr(blobs, "_commit_file", fail)
            upload = await client.post(f"/jmap/upload/{account}/", content=b"x")
            assert upload.status_code == 503, upload.text

        name, args, _ = await note_set(client, account)
        assert name == "Note/set" and args["oldState"] == "0" and args["newState"] == "1"


def test_store_rolls_back_and_maps_a_lock_inside_the_transaction(tmp_path):
    """write_sync: a busy error inside ``fn`` or at COMMIT rolls back and raises
    StoreUnavailable; the connection is left usable, outside any transaction."""
    store = Store(tmp_path, busy_timeout=0.1)
    store.write_sync(lambda db: db.execute("CREATE TABLE t (x)"))

    def write_then_locked(db):
        db.execute("INSERT INTO t VALUES (1)")
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(StoreUnavailable):
        store.write_sync(write_then_locked)
    assert not store.connect().conn.in_transaction
    assert store.read_sync(lambda db: db.execute("SELECT count(*) FROM t").fetchone()) == (0,)

    # Another error stays what it is (a bug, not a temporary condition), also rolled back.
    def write_then_bug(db):
        db.execute("INSERT INTO t VALUES (1)")
        db.execute("SELECT * FROM no_such_table")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store.write_sync(write_then_bug)
    assert store.read_sync(lambda db: db.execute("SELECT count(*) FROM t").fetchone()) == (0,)

    # A real lock: another connection in exclusive locking mode, met by a new connection.
    store.close()
    other = sqlite3.connect(store.path, timeout=0, isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO t VALUES (2)")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.write_sync(lambda db: db.execute("INSERT INTO t VALUES (3)"))
        with pytest.raises(StoreUnavailable):
            store.read_sync(lambda db: db.execute("SELECT count(*) FROM t").fetchone())
        assert time.monotonic() - started < 2
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.close()
    store.write_sync(lambda db: db.execute("INSERT INTO t VALUES (4)"))
    assert store.read_sync(lambda db: db.execute("SELECT x FROM t").fetchall()) == [(4,)]
    store.close()
