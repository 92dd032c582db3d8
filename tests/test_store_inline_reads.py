"""Short reads run on the event loop's thread; a long one is moved to a worker thread
(Store.read): the loop never runs a query for more than INLINE_READ_BUDGET, and what the
caller gets is the same either way."""

from __future__ import annotations

import threading

from jmap_host import store as store_module
from jmap_host.store import Store

LONG = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
    "SELECT count(*) FROM n"
)


async def test_a_short_read_runs_on_the_loop_thread(tmp_path):
    store = Store(tmp_path)
    await store.write(lambda db: db.execute("CREATE TABLE t (v INTEGER)"))
    await store.write(lambda db: db.execute("INSERT INTO t VALUES (1)"))
    threads: list[threading.Thread] = []

    def read(db):
        threads.append(threading.current_thread())
        return db.execute("SELECT v FROM t").fetchone()[0]

    assert await store.read(read) == 1
    assert threads == [threading.current_thread()]
    # inline=False (heavy work besides SQL) and inline_reads=False: a worker thread.
    assert await store.read(read, inline=False) == 1
    store.inline_reads = False
    assert await store.read(read) == 1
    assert threads[1] is not threading.current_thread()
    assert threads[2] is not threading.current_thread()
    store.close()


async def test_a_long_read_is_interrupted_and_run_in_a_worker(tmp_path, monkeypatch):
    store = Store(tmp_path)
    calls: list[threading.Thread] = []

    def read(db):
        calls.append(threading.current_thread())
        return db.execute(LONG).fetchone()[0]

    assert await store.read(read) == 3000000
    # First on the loop, stopped by SQLite at the budget; then again in a worker.
    assert calls[0] is threading.current_thread()
    assert len(calls) == 2 and calls[1] is not threading.current_thread()
    # The loop's connection is left usable, outside any transaction.
    assert await store.read(lambda db: db.execute("SELECT 2").fetchone()[0]) == 2
    assert not store._local.inline_db.conn.in_transaction
    # With a budget large enough, the same read stays on the loop.
    monkeypatch.setattr(store_module, "INLINE_READ_BUDGET", 60.0)
    calls.clear()
    assert await store.read(read) == 3000000
    assert calls == [threading.current_thread()]
    store.close()


async def test_a_read_that_finds_the_database_busy_is_retried_in_a_worker(tmp_path):
    """The loop never waits for a lock (its connection has no busy timeout): busy there
    means a worker thread retries with the normal timeout (and, past it, StoreUnavailable
    as before: test_store_busy)."""
    import sqlite3

    store = Store(tmp_path)
    calls: list[threading.Thread] = []

    def read(db):
        calls.append(threading.current_thread())
        if len(calls) == 1:  # as SQLITE_BUSY on the loop's connection would
            db.execute("SELECT 1")
            raise sqlite3.OperationalError("database is locked")
        return db.execute("SELECT 3").fetchone()[0]

    assert await store.read(read) == 3
    assert calls[0] is threading.current_thread()
    assert calls[1] is not threading.current_thread()
    store.close()


async def test_a_read_expected_to_be_long_moves_to_a_worker_at_once(tmp_path):
    """expect_long_read: a read that knows its cost (a query plan's estimate) past the
    budget stops there on the loop and runs again in a worker, without first spending the
    budget; a short estimate, or the same call in a worker, changes nothing."""
    from jmap_host import expect_long_read

    store = Store(tmp_path)
    calls: list[tuple[threading.Thread, int]] = []

    def read(db, seconds):
        steps = db.execute("SELECT 1").fetchone()[0]
        expect_long_read(db, seconds)
        calls.append((threading.current_thread(), steps))
        return steps + 1

    assert await store.read(lambda db: read(db, 10 * store_module.INLINE_READ_BUDGET)) == 2
    assert [t is threading.current_thread() for t, _ in calls] == [False]  # the worker's
    calls.clear()
    assert await store.read(lambda db: read(db, store_module.INLINE_READ_BUDGET / 10)) == 2
    assert [t is threading.current_thread() for t, _ in calls] == [True]
    assert not store._local.inline_db.conn.in_transaction

    # A read function's own "except Exception" does not take the move for an error.
    def guarded(db):
        try:
            return read(db, 10 * store_module.INLINE_READ_BUDGET)
        except Exception:
            return "answered something else"

    calls.clear()
    assert await store.read(guarded) == 2
    assert [t is threading.current_thread() for t, _ in calls] == [False]
    store.close()


async def test_time_spent_waiting_is_not_counted_against_the_budget(tmp_path):
    """The budget is the read's own CPU time: a read on the loop that waited (as for the
    GIL, taken by a /set in the writer thread while SQLite let go of it) past the budget
    but did little work stays where it is, rather than running again in a worker."""
    import time

    store = Store(tmp_path)
    calls: list[threading.Thread] = []
    small = (  # enough SQLite steps for the progress handler to be asked, little CPU
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) "
        "SELECT count(*) FROM n"
    )

    def read(db):
        calls.append(threading.current_thread())
        time.sleep(3 * store_module.INLINE_READ_BUDGET)  # wall time, no CPU time
        return db.execute(small).fetchone()[0]

    assert await store.read(read) == 1000
    assert calls == [threading.current_thread()]
    store.close()
