"""The WAL checkpoint runs in the background while the server runs (Store.checkpointer):
a COMMIT never copies the WAL into the database itself, and what is committed is in the
WAL first (synchronous=FULL), so moving the checkpoint changes no durability rule."""

from __future__ import annotations

import sqlite3

import trio

from jmap_host.store import Store


def fill(db, rows: int) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
    db.conn.executemany("INSERT INTO t (v) VALUES (?)", [(b"x" * 4000,) for _ in range(rows)])


async def test_commits_do_not_checkpoint_while_the_checkpointer_runs(tmp_path):
    store = Store(tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.checkpointer, 0.01)
        await trio.sleep(0.05)
        # 1,500 pages: past SQLite's automatic checkpoint (1,000 pages), which would
        # otherwise run inside this COMMIT.
        await store.write(lambda db: fill(db, 1500))
        autocheckpoint = await store.write(
            lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        )
        assert autocheckpoint == 0
        # Shortly after, the background task has copied the pages into the database file.
        with trio.fail_after(10):
            while store.path.stat().st_size < 1500 * 4000:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    # Without the task, writes checkpoint as SQLite does by default again.
    autocheckpoint = await store.write(
        lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    )
    assert autocheckpoint == 1000
    count = await store.read(lambda db: db.execute("SELECT count(*) FROM t").fetchone()[0])
    assert count == 1500
    store.close()


async def test_what_was_committed_survives_without_a_checkpoint(tmp_path):
    """Committed but never checkpointed (the process dies first): the WAL holds it, and the
    next connection replays it."""
    store = Store(tmp_path)
    store.background_checkpoint = True  # as while the checkpointer runs, but it never does
    await store.write(lambda db: fill(db, 1200))
    # Nothing was copied into the database file: the rows are in the WAL alone.
    assert store.path.stat().st_size < 100 * 4096
    assert store.path.with_name(store.path.name + "-wal").stat().st_size > 1200 * 4000
    # Another process opening the database (the connection above is left as a crash would).
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1200
    conn.close()


async def test_the_wal_starts_over_under_steady_writes(tmp_path):
    """Writes back to back, never pausing: the checkpointer still catches up with the
    whole WAL (it holds the write lock while it copies), so the WAL starts over from its
    beginning instead of growing with every write (reads look pages up in it)."""
    store = Store(tmp_path)
    await store.write(lambda db: db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.checkpointer, 0.005)
        await trio.sleep(0.02)
        for _ in range(400):  # 400 transactions of a page and more each
            await store.write(lambda db: db.execute("INSERT INTO t (v) VALUES (?)", [b"x" * 5000]))
        nursery.cancel_scope.cancel()
    wal = store.path.with_name(store.path.name + "-wal").stat().st_size
    assert wal < 400 * 2 * 4096 / 4, wal  # the high-water mark, far below what was written
    store.close()
