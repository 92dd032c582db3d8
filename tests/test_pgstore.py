"""The PostgreSQL store (jmap_host.pgstore): the common SQL's translation, and the
transaction rules the SQLite store has (ARCHITECTURE.md, Store): a read sees one snapshot,
writes are serialised (here across stores, as across nodes), a failed write leaves nothing,
a wait past the timeouts is StoreUnavailable, migrations run once however many nodes start.

The store tests run with ``--backend=postgresql`` (a throw-away server on 127.0.0.1)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import trio

from jmap_host.config import ConfigError
from jmap_host.host import load_host
from jmap_host.pgstore import PgStore, translate
from jmap_host.store import StoreUnavailable
from jmap_host.testing import write_config

postgresql = pytest.mark.backend("postgresql")


def test_translate_parameters_names_and_percent_signs():
    assert translate("SELECT [a] FROM [t] WHERE b = ? AND c LIKE 'x%'") == (
        'SELECT "a" FROM "t" WHERE b = %s AND c LIKE \'x%%\''
    )
    # A ? or [name] inside a string literal or a quoted name is text, not a parameter.
    assert translate("SELECT '?', '[a]', \"[b]?\" FROM t") == "SELECT '?', '[a]', \"[b]?\" FROM t"
    assert translate("SELECT 'it''s ?' WHERE x = ?") == "SELECT 'it''s ?' WHERE x = %s"
    # (Only identifiers: an array subscript stays as it is.)
    assert translate("SELECT (a)[1] FROM t") == "SELECT (a)[1] FROM t"


def test_postgresql_needs_a_url(tmp_path: Path):
    config = write_config(tmp_path, base='[storage]\ntype = "postgresql"\n'
                          '[directory."m"]\ntype = "memory"\n')  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_host(config)
    assert "storage.postgresql.url" in str(err.value)
    assert 'required when storage.type is "postgresql"' in str(err.value)


def _store(tmp_path: Path, **kwargs: float) -> PgStore:
    """A store on the test's database (the one its configuration names), with a table of
    counters; ``kwargs`` are PgStore's timeouts."""
    url = load_host(write_config(tmp_path)).store.url
    store = PgStore(url, directory=tmp_path / "data", **kwargs)  # type: ignore[arg-type]
    store.migrate()  # (no migration sets: the store's own functions and table)
    store.write_sync(
        lambda db: db.execute(
            "CREATE TABLE IF NOT EXISTS t_counter (id TEXT PRIMARY KEY, n INTEGER)"
        )
    )
    return store


@postgresql
def test_a_read_sees_one_snapshot(tmp_path: Path):
    store = _store(tmp_path)
    store.write_sync(lambda db: db.execute("INSERT INTO t_counter VALUES ('a', 1)"))
    first_read, written = threading.Event(), threading.Event()

    def read(db):
        before = db.execute("SELECT n FROM t_counter").fetchone()[0]
        first_read.set()
        written.wait(10)
        return before, db.execute("SELECT n FROM t_counter").fetchone()[0]

    result: list = []
    reader = threading.Thread(target=lambda: result.append(store.read_sync(read)))
    reader.start()
    first_read.wait(10)
    store.write_sync(lambda db: db.execute("UPDATE t_counter SET n = 2"))
    written.set()
    reader.join(10)
    assert result == [(1, 1)]
    assert store.read_sync(lambda db: db.execute("SELECT n FROM t_counter").fetchone()[0]) == 2
    store.close()


@postgresql
def test_writes_through_two_stores_are_serialised(tmp_path: Path):
    """Two stores on one database (two nodes): read-modify-write transactions never lose
    an update, because every write holds the one write lock."""
    one = _store(tmp_path)
    two = PgStore(one.url, directory=one.directory)
    one.write_sync(lambda db: db.execute("INSERT INTO t_counter VALUES ('a', 0)"))

    def bump(db):
        n = db.execute("SELECT n FROM t_counter WHERE id = 'a'").fetchone()[0]
        time.sleep(0.001)  # (room for another transaction to interleave, were it allowed)
        db.execute("UPDATE t_counter SET n = ? WHERE id = 'a'", [n + 1])

    threads = [
        threading.Thread(target=lambda s=store: [s.write_sync(bump) for _ in range(10)])
        for store in (one, two, one, two)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert one.read_sync(lambda db: db.execute("SELECT n FROM t_counter").fetchone()[0]) == 40
    one.close()
    two.close()


@postgresql
def test_a_failed_write_leaves_nothing(tmp_path: Path):
    store = _store(tmp_path)

    def write(db):
        db.execute("INSERT INTO t_counter VALUES ('x', 1)")
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError):
        store.write_sync(write)
    assert store.read_sync(lambda db: db.execute("SELECT count(*) FROM t_counter").fetchone()) == (
        0,
    )
    # The connection went back to the pool clean: the next write works.
    store.write_sync(lambda db: db.execute("INSERT INTO t_counter VALUES ('y', 1)"))
    store.close()


@postgresql
def test_waiting_for_the_write_lock_past_the_timeout_is_unavailable(tmp_path: Path):
    holder = _store(tmp_path)
    waiter = PgStore(holder.url, directory=holder.directory, busy_timeout=0.3)
    holding = threading.Event()

    def hold(db):
        holding.set()
        time.sleep(2)

    thread = threading.Thread(target=holder.write_sync, args=(hold,))
    thread.start()
    holding.wait(10)
    start = time.monotonic()
    with pytest.raises(StoreUnavailable):
        waiter.write_sync(lambda db: db.execute("SELECT 1"))
    assert time.monotonic() - start < 1.5
    thread.join(10)
    waiter.close()
    holder.close()


@postgresql
def test_a_statement_past_the_statement_timeout_is_unavailable(tmp_path: Path):
    store = _store(tmp_path)
    short = PgStore(store.url, directory=store.directory, statement_timeout=0.2)
    with pytest.raises(StoreUnavailable):
        short.read_sync(lambda db: db.execute("SELECT pg_sleep(2)").fetchone())
    assert short.read_sync(lambda db: db.execute("SELECT 1").fetchone()) == (1,)
    short.close()
    store.close()


@postgresql
@pytest.mark.empty_database
def test_nodes_starting_together_apply_each_migration_once(tmp_path: Path):
    """Three hosts on one new database migrate at once: every migration is applied by
    exactly one of them (an advisory lock), and the database is complete."""
    hosts = [load_host(write_config(tmp_path, name="jmap.toml")) for _ in range(3)]
    applied: list[list[str]] = []

    async def migrate_all() -> None:
        async with trio.open_nursery() as nursery:
            for host in hosts:

                async def one(host=host) -> None:
                    applied.append(await trio.to_thread.run_sync(host.store.migrate))

                nursery.start_soon(one)

    trio.run(migrate_all)
    every = [name for names in applied for name in names]
    assert every and len(every) == len(set(every))
    assert sorted(len(names) for names in applied)[:2] == [0, 0]
    assert hosts[0].store.migrate() == []
    for host in hosts:
        host.store.close()
